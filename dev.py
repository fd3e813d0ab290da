#!/usr/bin/env python3
"""Set up (or reuse) a local virtual environment and run the demo or the test suite in it.

    python3 dev.py demo    personalize the example patient with Learn-Morph-Infer: output/example_lmi/ (density,
                           plans, report.json, overview.png)
    python3 dev.py test    run every test (extra arguments go to pytest)

    --python 3.12          (with either command) use Python 3.12 and .venv312/ instead of Python 3.11 and .venv/;
                           a path to an interpreter works too. Slicer 5.10+ embeds Python 3.12; CI tests both.

Needs Python 3.11 (and 3.12 for --python 3.12) with pip; dev.py finds them on PATH (python3.11, python3.12) or in
pyenv. Each environment is rebuilt when pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_PYTHON = "3.11"
VENVS = {"3.11": ROOT / ".venv", "3.12": ROOT / ".venv312"}  # the versions requires-python allows
STAMP_NAME = ".tumorpersonalization-installed"

EXAMPLE = "Resources/ExamplePatient"
DEMO = ["-m", "TumorPersonalizationLib", "personalize", "--method", "lmi", "--t1", f"{EXAMPLE}/t1.nii.gz",
        "--t1gd", f"{EXAMPLE}/t1gd.nii.gz", "--flair", f"{EXAMPLE}/flair.nii.gz", "--out", "output/example_lmi"]

_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"


def _probe(command: list[str]) -> tuple[str, str] | None:
    """(major.minor, executable) of the interpreter that `command` starts, or None if it does not run."""
    try:
        done = subprocess.run([*command, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    return (lines[0], lines[1]) if done.returncode == 0 and len(lines) == 2 else None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name))


def find_python(version: str) -> str:
    """Path of a Python `version` (major.minor) interpreter: this one, python3.X on PATH, py -3.X, or pyenv's."""
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    candidates = [[f"python{version}"]]
    if os.name == "nt":
        candidates.append(["py", f"-{version}"])
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    # pyenv's shim python3.X fails unless X is selected (pyenv global/local); its installs work directly.
    found = pyenv.glob(f"{version}.*/bin/python{version}") if pyenv.is_dir() else []
    candidates += [[str(p)] for p in sorted(found, key=_version_key, reverse=True)]
    for command in candidates:
        if shutil.which(command[0]) or Path(command[0]).is_file():
            probed = _probe(command)
            if probed and probed[0] == version:
                return probed[1]
    sys.exit(f"dev.py: Python {version} not found (tried python{version} on PATH and pyenv). Install it, "
             f"or pass --python /path/to/python{version}.")


def select_python(choice: str) -> tuple[str, Path]:
    """(interpreter, virtual environment) for --python CHOICE: a version ("3.12") or an interpreter's path."""
    if choice in VENVS:
        return find_python(choice), VENVS[choice]
    if re.fullmatch(r"\d+\.\d+", choice):
        sys.exit(f"dev.py: --python {choice}: the project supports Python {', '.join(VENVS)}")
    probed = _probe([choice])
    if probed is None:
        sys.exit(f"dev.py: --python {choice}: neither a version ({', '.join(VENVS)}) nor a working interpreter")
    if probed[0] not in VENVS:
        sys.exit(f"dev.py: {choice} is Python {probed[0]}; the project supports {', '.join(VENVS)}")
    return probed[1], VENVS[probed[0]]


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_version(venv_dir: Path) -> str | None:
    """major.minor recorded in venv_dir/pyvenv.cfg, or None."""
    try:
        config = (venv_dir / "pyvenv.cfg").read_text()
    except OSError:
        return None
    match = re.search(r"^version(?:_info)?\s*=\s*(\d+\.\d+)", config, re.MULTILINE)
    return match.group(1) if match else None


def ensure_environment(interpreter: str, venv_dir: Path, version: str) -> Path:
    python, stamp = venv_python(venv_dir), venv_dir / STAMP_NAME
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    current = python.exists() and venv_version(venv_dir) == version
    if current and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not current:
        print(f"creating virtual environment in {venv_dir} (Python {version})", flush=True)
        subprocess.run([interpreter, "-m", "venv", "--clear", str(venv_dir)], check=True)
    print(f"installing dependencies (pinned in pyproject.toml) for Python {version}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-qq", "-e", f"{ROOT}[test,slicer-test]"], check=True)
    stamp.write_text(wanted + "\n")
    return python


def split_python_option(args: list[str]) -> tuple[str, list[str]]:
    """(--python value, the other arguments); the other arguments go to pytest or the demo unchanged."""
    choice, rest, i = DEFAULT_PYTHON, [], 0
    while i < len(args):
        if args[i] == "--python" and i + 1 < len(args):
            choice, i = args[i + 1], i + 2
            continue
        if args[i].startswith("--python="):
            choice = args[i].split("=", 1)[1]
        else:
            rest.append(args[i])
        i += 1
    return choice, rest


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    choice, rest = split_python_option(argv[1:])
    interpreter, venv_dir = select_python(choice)
    version = next(v for v, d in VENVS.items() if d == venv_dir)
    python = ensure_environment(interpreter, venv_dir, version)
    command = DEMO + rest if argv[0] == "demo" else ["-m", "pytest", "-q", *rest]
    return subprocess.run([str(python), *command], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
