"""The module's subprocess runner and dependency pins: plain Python, no Slicer needed."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import slicer_fixtures  # noqa: F401 (puts the module's folder on sys.path)

from TumorPersonalizationLib.cli import JsonProgress
from TumorPersonalizationModuleLib import dependencies, runner

ROOT = Path(__file__).resolve().parents[2]


def test_json_progress_lines_parse_and_are_throttled(capsys):
    progress = JsonProgress("personalizing (tmcmc)")
    for fraction in [0.0, 0.0001, 0.0002, 0.25, 0.2500001, 0.5, 1.0, 1.0]:
        progress(fraction)
    lines = capsys.readouterr().err.splitlines()
    parsed = [runner.parseProgressLine(line) for line in lines]
    assert parsed == [(0.0, "personalizing (tmcmc)"), (0.25, "personalizing (tmcmc)"),
                      (0.5, "personalizing (tmcmc)"), (1.0, "personalizing (tmcmc)")]
    assert all(json.loads(line).keys() == {"progress", "message"} for line in lines)
    assert runner.parseProgressLine("error: something") is None
    assert runner.parseProgressLine('{"progress": "x"}') is None


def test_methods_come_from_the_registry():
    # The panel offers every variant of every method the Lib registers, with its label, from `methods --json`.
    completed = subprocess.run([sys.executable, "-m", "TumorPersonalizationLib", "methods", "--json"],
                               capture_output=True, text=True, check=True, env=runner.childEnvironment())
    listing = json.loads(completed.stdout)["methods"]
    assert runner.methodsFromListing(listing) == runner.METHODS
    assert [m.label for m in runner.METHODS.values()] == [
        "Learn-Morph-Infer (about half a minute)", "Learn-Morph-Infer + full refinement (minutes)",
        "Learn-Morph-Infer in the atlas, unfitted (fastest, least accurate)",
        "Learn-Morph-Infer, mass-effect model (the tumor pushes the brain; about a minute)", "TMCMC (Bayesian)",
        "NPE (neural posterior)"]
    assert runner.METHODS["lmiRefine"].extraFlags == ("--refine",)
    assert runner.METHODS["lmiAtlas"].extraFlags == ("--anatomy", "atlas", "--coarse-fit", "off")
    assert runner.METHODS["lmiMassEffect"].extraFlags == ("--model", "mass-effect")
    assert runner.METHODS["tmcmc"].samplesPosterior and runner.METHODS["lmi"].registersAtlas
    # A method registered tomorrow appears with no change to the module; a preset must use a flag.
    extra = dict(listing[-1], name="abc", variants=[{"key": "abc", "label": "ABC", "settings": {}}])
    assert runner.methodsFromListing(listing + [extra])["abc"].cliMethod == "abc"
    bad = dict(extra, variants=[{"key": "abc", "label": "ABC", "settings": {"grid_mm": 2.0}}])
    with pytest.raises(ValueError, match="not a command-line flag"):
        runner.methodsFromListing([bad])


def test_command_for_each_method():
    files = {"--t1": "t1.nii.gz", "--t1gd": "t1gd.nii.gz", "--flair": "flair.nii.gz", "--pet": "pet.nii.gz",
             "--wm": "wm.nii.gz", "--gm": "gm.nii.gz"}
    lmi = runner.buildCommand(runner.METHODS["lmiRefine"], files, "out", randomSeed=3, python="py")
    assert lmi[:4] == ["py", "-m", "TumorPersonalizationLib", "personalize"]
    assert lmi[lmi.index("--method") + 1] == "lmi" and "--refine" in lmi and "--t1" in lmi
    # The patient's own tissue maps go to Learn-Morph-Infer too (it simulates in them); PET does not, nor
    # settings that only TMCMC has.
    assert lmi[lmi.index("--wm") + 1] == "wm.nii.gz" and "--pet" not in lmi and "--samples" not in lmi
    assert "--seed" not in lmi and "--margin-mm" in lmi
    tmcmc = runner.buildCommand(runner.METHODS["tmcmc"], files, "out", samples=64, workers=2, marginMm=12.5,
                                randomSeed=3, python="py")
    for flag, value in (("--samples", "64"), ("--workers", "2"), ("--margin-mm", "12.5"), ("--seed", "3"),
                        ("--wm", "wm.nii.gz"), ("--pet", "pet.nii.gz"), ("--out", "out")):
        assert tmcmc[tmcmc.index(flag) + 1] == value
    # TMCMC segments the T1 into tissue maps when none are given: the T1 goes along.
    assert tmcmc[tmcmc.index("--t1") + 1] == "t1.nii.gz" and "--progress-json" in tmcmc
    fast = runner.buildCommand(runner.METHODS["tmcmc"], files, "out", fast=True, python="py")
    assert "--fast" in fast and "--samples" not in fast and "--workers" not in fast


def _job(code):
    return runner.CliJob([sys.executable, "-c", code])


def test_job_reads_progress_and_the_error_line():
    job = _job("import sys, json\n"
               "print(json.dumps({'progress': 0.5, 'message': 'half'}), file=sys.stderr, flush=True)\n"
               "print('some warning', file=sys.stderr)\n"
               "print('error: --t1gd /tmp/x.nii.gz: the T1Gd segmentation is empty', file=sys.stderr)\n"
               "sys.exit(2)")
    assert job.wait(timeoutS=30)
    assert (job.progress, job.message, job.returncode, job.succeeded) == (0.5, "half", 2, False)
    assert job.errorMessage() == "--t1gd /tmp/x.nii.gz: the T1Gd segmentation is empty"
    crashed = _job("raise SystemExit('boom')")
    assert crashed.wait(timeoutS=30) and "exit code 1" in crashed.errorMessage() and "boom" in crashed.errorMessage()


def test_job_cancel_stops_a_busy_process():
    job = _job("import time\nwhile True: time.sleep(0.05)")
    assert not job.wait(timeoutS=0.3)
    job.cancel()
    assert job.finished and job.cancelled and job.errorMessage() == "cancelled"


def test_requirements_txt_has_the_pyproject_pins():
    """Slicer installs Resources/requirements.txt; it must pin what pyproject.toml pins (the one source)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {name.lower(): version for name, version in (d.split("==") for d in project)}
    listed = dependencies.readPins()
    header = dependencies.REQUIREMENTS.read_text()
    for name, version in pins.items():
        if name in listed:
            assert listed[name] == version, name
        else:  # left to Slicer or to the PyTorch extension, and said so in the file
            assert f" {name}" in header.lower() and "provided-by" in header, name
    assert set(listed) <= set(pins)
