"""Check the installable package (``make test-package``): build, install into a fresh venv, run it elsewhere.

1. ``python -m build`` builds the sdist, then the wheel from the sdist (no build isolation: the
   project's own setuptools, so nothing is downloaded).
2. Both must hold every dataset card (``masra/cards/*.yaml``) and training config
   (``masra/configs/*.yaml``) of the checkout, byte for byte.
3. A fresh virtual environment gets the wheel (``pip install --no-deps``); its dependencies come from
   the environment running this script through a ``.pth`` file (torch and friends are not installed
   twice).
4. From an empty temporary folder outside the checkout, with ``$MASRA_CARDS`` / ``$MASRA_CONFIGS``
   unset: ``import masra`` must be the installed wheel, not the checkout; ``masra --help``;
   ``masra data stats --dataset qvhighlights --split val`` on a 3-line sample of the real val file
   (tests/data/qvhighlights_val_sample.jsonl, CC BY-NC-SA 4.0, see tests/data/README.md); a small
   fixture world and a 2-epoch ``masra train --dataset fixture``, which must use the shipped fixture
   config (its log line and the run's saved config).

Usage: ``python scripts/check_package.py [--keep]``. Prints one line per step with its time, stops
at the first failure (exit 1), and ends with ``package: N passed, M failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("cards", "configs")
QVH_SAMPLE = REPO / "tests" / "data" / "qvhighlights_val_sample.jsonl"


class CheckError(RuntimeError):
    """A failed check; the message says what was expected."""


PASSED: list[str] = []  # the steps done so far


def step(name: str, t0: float) -> float:
    """Print a passed step with its time since ``t0``; the time now."""
    now = time.perf_counter()
    PASSED.append(name)
    print(f"ok  {name} ({now - t0:.1f} s)", flush=True)
    return now


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; its stdout and stderr together, or CheckError with their tail."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise CheckError(f"`{' '.join(cmd)}` exited {proc.returncode} in {cwd}:\n{out[-4000:]}")
    return out


def shipped_files() -> dict[str, bytes]:
    """``masra/cards/x.yaml`` -> bytes, for every card and config of the checkout."""
    out = {}
    for folder in SHIPPED:
        for path in sorted((REPO / "masra" / folder).glob("*.yaml")):
            out[f"masra/{folder}/{path.name}"] = path.read_bytes()
    if not out:
        raise CheckError("the checkout has no masra/cards/*.yaml or masra/configs/*.yaml")
    return out


def check_archives(dist: Path, want: dict[str, bytes]) -> tuple[Path, Path]:
    """(wheel, sdist) of ``dist``, after checking that each holds ``want`` byte for byte."""
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise CheckError(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    wheel, sdist = wheels[0], sdists[0]
    with zipfile.ZipFile(wheel) as z:
        got = {n: z.read(n) for n in z.namelist() if n in want}
    with tarfile.open(sdist) as t:
        prefix = sdist.name.removesuffix(".tar.gz") + "/"
        for member in t.getmembers():
            name = member.name.removeprefix(prefix)
            f = t.extractfile(member) if name in want else None
            if f is not None:
                got[f"sdist:{name}"] = f.read()
    for name, data in want.items():
        for key, archive in ((name, wheel), (f"sdist:{name}", sdist)):
            if got.get(key) != data:
                raise CheckError(f"{archive.name} lacks {name} or holds another version of it")
    return wheel, sdist


def make_venv(venv: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed and this interpreter's packages reachable; its python."""
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv)
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    # Lines of a .pth file go on sys.path after the venv's own site-packages, so the wheel's masra
    # comes first; .pth files inside these folders (the checkout's editable install) are not run.
    Path(purelib.strip(), "_masra_check_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    run([*pip, str(wheel)], cwd=venv.parent)
    return python


def check_installed(python: Path, venv: Path, work: Path, env: dict[str, str]) -> None:
    """``import masra`` is the wheel in ``venv``, and its cards and configs are the shipped ones."""
    probe = (
        "import json, masra\n"
        "from masra.datasets.card import find_card\n"
        "from masra.grounding.config import find_train_config\n"
        "print(json.dumps({'masra': masra.__file__, 'card': str(find_card('qvhighlights')),"
        " 'config': str(find_train_config('fixture'))}))\n"
    )
    got = json.loads(run([str(python), "-c", probe], work, env).strip().splitlines()[-1])
    for key, path in got.items():
        if not Path(path).resolve().is_relative_to(venv.resolve()):
            raise CheckError(f"{key} comes from {path}, not from the fresh venv {venv}")
        if Path(path).resolve().is_relative_to(REPO):
            raise CheckError(f"{key} comes from the checkout: {path}")


def check_commands(venv: Path, work: Path, env: dict[str, str]) -> float:
    """masra --help, data stats on the QVHighlights sample, a fixture world and a tiny training."""
    masra = str(venv / "bin" / "masra")
    t0 = time.perf_counter()
    if "data" not in run([masra, "--help"], work, env):
        raise CheckError("`masra --help` does not list the data commands")
    t0 = step("masra --help", t0)
    qvh = work / "qvh"
    qvh.mkdir()
    shutil.copyfile(QVH_SAMPLE, qvh / "highlight_val_release.jsonl")
    out = run(
        [masra, "data", "stats", "--dataset", "qvhighlights", "--split", "val", "--set", "root=qvh"],
        work,
        env,
    )
    stats = json.loads(out[out.index("{") : out.rindex("}") + 1])
    if stats.get("queries") != 3:
        raise CheckError(f"data stats on the 3-line sample counted {stats.get('queries')} queries")
    t0 = step("masra data stats --dataset qvhighlights (the shipped card)", t0)
    run([masra, "fixture", "--out", "fx", "--train-videos", "4", "--val-videos", "2"], work, env)
    t0 = step("masra fixture (4 + 2 videos)", t0)
    sets = ["card.root=fx", "epochs=2", "batch_size=8", "eval_every=2", "cpu_threads=1"]
    log = run(
        [masra, "train", "--dataset", "fixture", "--out", "run", *[a for s in sets for a in ("--set", s)]],
        work,
        env,
    )
    used = next(
        (x.split("training config: ", 1)[1] for x in log.splitlines() if "training config: " in x), ""
    )
    if not (
        used.endswith("masra/configs/fixture.yaml") and Path(used).resolve().is_relative_to(venv.resolve())
    ):
        raise CheckError(f"masra train did not use the installed fixture config; its log says {used!r}")
    saved = json.loads((work / "run" / "best" / "config.json").read_text(encoding="utf-8"))["train"]
    if saved["lr"] != 3.0e-4 or saved["model"].get("hidden_dim") != 128:  # the fixture config's values
        raise CheckError(
            f"the run's saved config is not the fixture config's: lr {saved['lr']}, model {saved['model']}"
        )
    return step("masra train --dataset fixture (2 epochs, the shipped config)", t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", action="store_true", help="Keep the temporary folder (its path is printed).")
    args = p.parse_args(argv)
    start = t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="masra-package-"))
    if tmp.resolve().is_relative_to(REPO):
        raise CheckError(f"the temporary folder {tmp} is inside the checkout")
    try:
        dist, work = tmp / "dist", tmp / "work"
        work.mkdir()
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)], REPO)
        t0 = step("python -m build: sdist, then the wheel from the sdist", t0)
        wheel, sdist = check_archives(dist, shipped_files())
        t0 = step(f"{wheel.name} and {sdist.name} hold every card and config", t0)
        venv = tmp / "venv"
        python = make_venv(venv, wheel)
        t0 = step("fresh venv with the wheel (pip install --no-deps)", t0)
        env = {k: v for k, v in os.environ.items() if k not in ("MASRA_CARDS", "MASRA_CONFIGS", "PYTHONPATH")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        check_installed(python, venv, work, env)
        t0 = step("import masra is the installed wheel, outside the checkout", t0)
        check_commands(venv, work, env)
    except CheckError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        print(f"package: {len(PASSED)} passed, 1 failed")
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"package check done in {time.perf_counter() - start:.1f} s")
    print(f"package: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
