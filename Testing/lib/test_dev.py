"""dev.py, the entry point of the README's commands: --python, the per-version environments, requires-python."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import dev  # noqa: E402

sys.path.remove(str(ROOT))


def test_python_option_is_taken_out_and_everything_else_goes_to_pytest():
    assert dev.split_python_option(["-k", "front", "-x"]) == ("3.11", ["-k", "front", "-x"])
    assert dev.split_python_option(["--python", "3.12", "Testing/lib", "-x"]) == ("3.12", ["Testing/lib", "-x"])
    assert dev.split_python_option(["-k", "python", "--python=3.12"]) == ("3.12", ["-k", "python"])


def test_each_supported_version_has_its_own_ignored_environment():
    assert dev.VENVS["3.11"].name == ".venv" and dev.DEFAULT_PYTHON == "3.11"
    assert len({d for d in dev.VENVS.values()}) == len(dev.VENVS)
    ignored = (ROOT / ".gitignore").read_text().split()
    for venv_dir in dev.VENVS.values():
        assert f"{venv_dir.name}/" in ignored, venv_dir.name


def test_requires_python_allows_exactly_the_versions_dev_py_tests():
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    lower, upper = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec.replace(" ", "")).groups()
    assert sorted(dev.VENVS, key=lambda v: int(v.split(".")[1])) == [f"3.{m}" for m in range(int(lower), int(upper))]


def test_running_interpreter_is_found_and_unsupported_versions_are_refused():
    running = "%d.%d" % sys.version_info[:2]
    assert dev.find_python(running) == sys.executable
    with pytest.raises(SystemExit, match="supports"):
        dev.select_python("3.10")
    with pytest.raises(SystemExit, match="neither a version"):
        dev.select_python(str(ROOT / "no-such-python"))


def test_environment_version_is_read_from_pyvenv_cfg(tmp_path):
    assert dev.venv_version(tmp_path) is None
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.12.1\n")
    assert dev.venv_version(tmp_path) == "3.12"
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7.final.0\n")
    assert dev.venv_version(tmp_path) == "3.11"
