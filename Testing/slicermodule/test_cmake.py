"""CMake tier: the extension configures against the stub SlicerConfig in Testing/cmake, listing every file.

The stub is strict where Slicer is (unknown keywords, missing files, missing extension metadata) and records what
the macros would copy; what Slicer's real build then does with the list (copy, byte-compile, package) is not
checked here.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import slicer_fixtures  # noqa: F401 (puts the module's folder on sys.path)

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "TumorPersonalization"

STUB = ROOT / "Testing" / "cmake"
DEST = "lib/Slicer-5.8/qt-scripted-modules"


def _cmake():
    # The pinned cmake from PyPI (dev.py installs it into the venv); any cmake on PATH otherwise.
    local = Path(sys.executable).parent / "cmake"
    found = str(local) if local.exists() else shutil.which("cmake")
    if found is None:
        pytest.skip("cmake is not installed")
    return found


def _configure(source, build):
    return subprocess.run([_cmake(), "-S", str(source), "-B", str(build), f"-DSlicer_DIR={STUB}",
                           "-DBUILD_TESTING=ON"], capture_output=True, text=True, timeout=120)


def test_extension_configures_and_lists_every_file(tmp_path):
    result = _configure(ROOT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    entries = [line.split("|", 1) for line in (tmp_path / "slicer_stub_manifest.txt").read_text().splitlines()]
    listed = {(kind, value) for kind, value in entries}
    expected_scripts = ["TumorPersonalization.py"]
    for package in ("TumorPersonalizationLib", "TumorPersonalization/TumorPersonalizationModuleLib"):
        for path in sorted((ROOT / package).rglob("*.py")):
            expected_scripts.append(str(path.relative_to(MODULE_DIR if package.startswith("TumorPersonalization/")
                                                         else ROOT)))
    for script in expected_scripts:
        assert ("script", f"{DEST}/{script}") in listed, f"{script} is not installed by the CMake files"
    for resource in ("Icons/TumorPersonalization.png", "UI/TumorPersonalization.ui", "requirements.txt",
                     "Atlas/NOTICE.txt", "Atlas/mni_icbm152_wm_1.5mm.nii.gz",
                     "LMI/inverse_net.pt", "LMI/shape_regressor.pt", "LMI/seed_regressor.pt", "LMI/config.json",
                     "LMI/mass_effect/inverse_net.pt", "LMI/mass_effect/shape_regressor.pt",
                     "LMI/mass_effect/seed_regressor.pt", "NPE/npe.pt", "NPE/config.json",
                     "Surrogate/surrogate.pt", "Surrogate/config.json"):  # the methods need them
        assert ("resource", f"{DEST}/Resources/{resource}") in listed, resource
    assert ("unittest", "TumorPersonalization.py") in listed
    assert ("module", "TumorPersonalization") in listed
    metadata = dict(value.split("=", 1) for kind, value in entries if kind == "metadata")
    assert metadata["DEPENDS"] == "PyTorch" and metadata["CATEGORY"] == "Radiotherapy"


def _tiny_project(tmp_path, call):
    source = tmp_path / "src"
    source.mkdir()
    (source / "exists.py").write_text("")
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(Tiny LANGUAGES NONE)\nfind_package(Slicer REQUIRED)\n"
        f"include(${{Slicer_USE_FILE}})\n{call}\n")
    return _configure(source, tmp_path / "build")


@pytest.mark.parametrize("call, message", [
    ("slicerMacroBuildScriptedModule(NAMES Tiny SCRIPTS exists.py)", "Unknown keywords"),
    ("slicerMacroBuildScriptedModule(NAME Tiny SCRIPTS exists.py missing.py)", "nonexistent file 'missing.py'"),
    ("slicer_add_python_unittest(SCRIPT exists.py SLICERARGS --no-main-window)", "Unknown keywords"),
    ("ctkMacroCompilePythonScript(TARGET_NAME T SCRIPTS ../src/exists.py DESTINATION_DIR ${CMAKE_BINARY_DIR}/d "
     "INSTALL_DIR i)", "would be copied outside"),
])
def test_stub_refuses_what_slicer_refuses(tmp_path, call, message):
    result = _tiny_project(tmp_path, call)
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr
