from masra.pipelines.cli import main

main()
