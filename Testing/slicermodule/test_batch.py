"""Batch mode: Scripts/personalize_batch.py through the module's Logic (stand-in Slicer) and through the CLI."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from slicer_fixtures import module, scene  # noqa: F401 (fixtures; also puts the module on sys.path)

from TumorPersonalizationLib.imaging.io import read_volume, resample, write_volume

from cases import make_case

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("personalize_batch", ROOT / "Scripts" / "personalize_batch.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _patient_folder(folder, case):
    folder.mkdir(parents=True)
    for role, volume in (("t1", case.t1), ("t1gd", case.t1gd), ("flair", case.flair), ("wm", case.tissue.wm),
                         ("gm", case.tissue.gm), ("csf", case.tissue.csf)):
        write_volume(volume, folder / f"{role}.nii.gz")
    return folder


def test_batch_through_the_logic_writes_nodes_and_scene(module, tmp_path, capsys):
    case = make_case()
    _patient_folder(tmp_path / "patients" / "p01", case)
    (tmp_path / "patients" / "notes").mkdir()  # a folder that is no patient is skipped
    code = _script().main(["--input", str(tmp_path / "patients"), "--out", str(tmp_path / "results"),
                           "--method", "tmcmc", "--samples", "32", "--workers", "1"], use_slicer=True)
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n"):])  # after the progress lines
    assert code == 0, summary
    assert summary["via"] == "Slicer module Logic" and list(summary["patients"]) == ["p01"]
    out = tmp_path / "results" / "p01"
    for name in ("density.nii.gz", "ctv.seg.nrrd", "parameters.tsv", "report.json", "scene.mrb"):
        assert (out / name).is_file(), name
    # Slicer's file reader may store the flipped k axis the other way round: compare at the same physical voxels.
    density = resample(read_volume(out / "density.nii.gz"), case.geometry, "nearest")
    assert density.array.max() > 0.5
    assert density.array[case.t1gd.array > 0].mean() > 2 * density.array[case.t1gd.array == 0].mean()
    assert "mu1" in (out / "parameters.tsv").read_text()


def test_batch_without_slicer_builds_the_cli_commands(tmp_path, capsys):
    script = _script()
    case_files = _patient_folder(tmp_path / "one", _tiny_case())
    code = script.main(["--input", str(case_files), "--out", str(tmp_path / "out"), "--method", "tmcmc", "--fast",
                        "--dry-run"], use_slicer=False)
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    command = summary["patients"]["one"]["command"]
    assert summary["via"] == "TumorPersonalizationLib CLI"
    assert command[command.index("--method") + 1] == "tmcmc" and "--fast" in command
    assert command[command.index("--wm") + 1].endswith("wm.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no patient"):
        script.main(["--input", str(tmp_path / "empty"), "--out", str(tmp_path / "x")], use_slicer=False)


def _tiny_case():
    from types import SimpleNamespace

    from TumorPersonalizationLib.imaging.tissue import TissueMaps
    from TumorPersonalizationLib.imaging.volume import Volume

    zeros = Volume.from_array(np.zeros((4, 4, 4), np.float32))
    return SimpleNamespace(t1=zeros, t1gd=zeros, flair=zeros, tissue=TissueMaps(zeros, zeros, zeros))
