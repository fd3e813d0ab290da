#!/usr/bin/env python3
"""Set up (or reuse) the local virtual environment .venv and run the demo or the test suite.

    python3 dev.py demo    personalize the example patient with Learn-Morph-Infer: output/example_lmi/ (density,
                           plans, report.json, overview.png)
    python3 dev.py test    run every test (extra arguments go to pytest)

Needs only Python 3.11 and pip. The environment is rebuilt when pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".tumorpersonalization-installed"

EXAMPLE = "Resources/ExamplePatient"
DEMO = ["-m", "TumorPersonalizationLib", "personalize", "--method", "lmi", "--t1", f"{EXAMPLE}/t1.nii.gz",
        "--t1gd", f"{EXAMPLE}/t1gd.nii.gz", "--flair", f"{EXAMPLE}/flair.nii.gz", "--out", "output/example_lmi"]


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing dependencies (pinned in pyproject.toml)", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-qq", "-e", f"{ROOT}[test,slicer-test]"], check=True)
    STAMP.write_text(wanted + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.version_info[:2] != (3, 11):
        print(f"warning: made for Python 3.11, running {sys.version.split()[0]}", file=sys.stderr)
    ensure_environment()
    if argv[0] == "demo":
        command = DEMO + argv[1:]
    else:
        command = ["-m", "pytest", "-q", *argv[1:]]
    return subprocess.run([str(PYTHON), *command], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
