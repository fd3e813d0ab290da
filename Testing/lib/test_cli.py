"""The command line: outputs with the input's geometry, a picture, and one clear line plus exit 2 on bad input."""
import json

import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.imaging import Volume, read_volume, write_volume

from conftest import phantom_tissue

GEOMETRY = dict(spacing_mm=(2.0, 2.0, 2.0), origin_ras_mm=(10.0, -20.0, 5.0),
                direction_ras=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
SEED_VOXEL = (12, 22, 18)


@pytest.fixture
def tissue_files(tmp_path):
    wm, gm, csf = phantom_tissue()
    paths = {}
    for name, array in (("wm", wm), ("gm", gm), ("csf", csf)):
        paths[name] = write_volume(Volume.from_array(array, **GEOMETRY), tmp_path / f"{name}.nii.gz")
    return paths


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def base_args(tissue_files, out):
    return ["simulate", "--dw", "0.5", "--rho", "0.05", "--days", "120", "--wm", tissue_files["wm"],
            "--gm", tissue_files["gm"], "--csf", tissue_files["csf"], "--out", out, "--quiet"]


def test_simulate_writes_density_on_the_input_grid_and_a_png(tmp_path, tissue_files, capsys):
    out, png = tmp_path / "res" / "density.nii.gz", tmp_path / "res" / "overview.png"
    code, stdout, _ = run(base_args(tissue_files, out) + ["--seed-voxel", *SEED_VOXEL, "--png", png], capsys)
    assert code == 0
    density = read_volume(out)
    assert density.geometry.is_close(read_volume(tissue_files["wm"]).geometry)
    assert density.array.dtype == np.float32 and 0 <= density.array.min() and density.array.max() <= 1
    assert density.array[SEED_VOXEL] > 0.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    summary = json.loads(stdout)
    assert summary["volume_ml_c>=0.25"] > 0


def test_seed_in_mm_and_in_voxels_agree(tmp_path, tissue_files, capsys):
    geometry = read_volume(tissue_files["wm"]).geometry
    seed_mm = geometry.index_to_ras(SEED_VOXEL)
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert run(base_args(tissue_files, a) + ["--seed-voxel", *SEED_VOXEL], capsys)[0] == 0
    assert run(base_args(tissue_files, b) + ["--seed-mm", *seed_mm], capsys)[0] == 0
    np.testing.assert_array_equal(read_volume(a).array, read_volume(b).array)


def test_bundled_atlas_is_the_default(tmp_path, capsys):
    out = tmp_path / "d.nii.gz"
    code, stdout, _ = run(["simulate", "--dw", "0.2", "--rho", "0.05", "--days", "60",
                           "--seed-mm", "-25", "-10", "20", "--out", out, "--quiet"], capsys)
    assert code == 0
    assert "atlas" in json.loads(stdout)["tissue"]
    assert read_volume(out).geometry.spacing_mm == (1.5, 1.5, 1.5)


@pytest.mark.parametrize("change, message", [
    (lambda a, f, t: a + ["--seed-voxel", "19", "21", "17"], "CSF or background"),
    (lambda a, f, t: a + ["--seed-voxel", "100", "1", "1"], "outside the image"),
    (lambda a, f, t: a + ["--seed-mm", "500", "0", "0"], "outside the image"),
    (lambda a, f, t: _replace(a, "--gm", t["gm_small"]) + ["--seed-voxel", *SEED_VOXEL], "different grid"),
    (lambda a, f, t: _replace(a, "--gm", t["gm_shifted"]) + ["--seed-voxel", *SEED_VOXEL], "different grid"),
    (lambda a, f, t: _replace(a, "--wm", t["wm_nan"]) + ["--seed-voxel", *SEED_VOXEL], "NaN"),
    (lambda a, f, t: _replace(a, "--wm", t["wm_big"]) + ["--seed-voxel", *SEED_VOXEL], "[0, 1]"),
    (lambda a, f, t: _replace(a, "--gm", f["wm"]) + ["--seed-voxel", *SEED_VOXEL], "WM + GM + CSF must be at most 1"),
    (lambda a, f, t: _replace(a, "--days", "1e9") + ["--seed-voxel", *SEED_VOXEL], "days = 1e+09 is outside"),
    (lambda a, f, t: _replace(a, "--dw", "1e6") + ["--seed-voxel", *SEED_VOXEL], "dw_mm2_per_day = 1e+06 is outside"),
    (lambda a, f, t: _replace(a, "--csf", t["missing"]) + ["--seed-voxel", *SEED_VOXEL], "file not found"),
    (lambda a, f, t: _replace(a, "--wm", t["garbage"]) + ["--seed-voxel", *SEED_VOXEL], "cannot read"),
    (lambda a, f, t: _replace(a, "--out", f["wm"]) + ["--seed-voxel", *SEED_VOXEL], "is one of the input"),
    (lambda a, f, t: _replace(a, "--out", t["txt"]) + ["--seed-voxel", *SEED_VOXEL], "unsupported extension"),
])
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path, tissue_files, capsys, change, message):
    wm = read_volume(tissue_files["wm"])
    bad = {
        "gm_shifted": write_volume(Volume.from_array(wm.array, spacing_mm=(2, 2, 2), origin_ras_mm=(12, -20, 5),
                                                     direction_ras=GEOMETRY["direction_ras"]), tmp_path / "gx.nii.gz"),
        "gm_small": write_volume(Volume.from_array(np.zeros((10, 10, 10), np.float32)), tmp_path / "gs.nii.gz"),
        "wm_nan": write_volume(wm.like(np.where(wm.array > 0.5, np.nan, wm.array)), tmp_path / "wn.nii.gz"),
        "wm_big": write_volume(wm.like(wm.array * 3), tmp_path / "wb.nii.gz"),
        "missing": tmp_path / "missing.nii.gz",
        "garbage": tmp_path / "garbage.nii.gz",
        "txt": tmp_path / "density.txt",
    }
    bad["garbage"].write_bytes(b"\x00" * 100)
    out = tmp_path / "out" / "density.nii.gz"
    before = {p: p.read_bytes() for p in tissue_files.values()}
    code, _, err = run(change(base_args(tissue_files, out), tissue_files, bad), capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert {p: p.read_bytes() for p in tissue_files.values()} == before  # inputs untouched


def test_nonpositive_parameters_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--dw", "-1", "--rho", "0.1", "--days", "10", "--seed-voxel", "1", "1", "1",
              "--out", str(tmp_path / "x.nii.gz")])
    assert exit_info.value.code == 2
    assert "--dw: must be a positive number" in capsys.readouterr().err


def _replace(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


@pytest.fixture
def plan_inputs(tmp_path):
    """Density of a simulated tumor, its core (c >= 0.6) as a BraTS-style label map, brain mask and recurrence."""
    from TumorPersonalizationLib.models.fisher_kolmogorov import Domain

    wm, gm, csf = phantom_tissue()
    now, later = Domain(wm, gm, (2.0, 2.0, 2.0)).simulate(0.3, 0.05, [150.0, 270.0], SEED_VOXEL)
    labels = np.where(now >= 0.8, 1, np.where(now >= 0.6, 4, np.where(now >= 0.3, 2, 0))).astype(np.uint8)
    files = {}
    for name, array in (("density", now), ("core", labels), ("brain", (wm + gm + csf > 0.5).astype(np.uint8)),
                        ("csf", csf), ("recurrence", (later >= 0.6).astype(np.uint8))):
        files[name] = write_volume(Volume.from_array(array, **GEOMETRY), tmp_path / f"{name}.nii.gz")
    return files


def test_plan_writes_both_ctvs_a_report_and_a_picture(tmp_path, plan_inputs, capsys):
    f = plan_inputs
    out = tmp_path / "plan"
    code, stdout, _ = run(["plan", "--density", f["density"], "--core", f["core"], "--brain-mask", f["brain"],
                           "--csf", f["csf"], "--recurrence", f["recurrence"], "--margin-mm", "10", "--out", out],
                          capsys)
    assert code == 0
    report = json.loads((out / "plan.json").read_text())
    assert report == json.loads(stdout)
    assert report["standard"]["margin_mm"] == 10.0 and report["standard"]["csf_excluded"]
    standard, model = read_volume(out / "ctv_standard.nii.gz"), read_volume(out / "ctv_model.nii.gz")
    assert standard.geometry.is_close(read_volume(f["density"]).geometry)
    ml = standard.geometry.voxel_volume_ml
    assert report["standard"]["volume_ml"] == pytest.approx(standard.array.sum() * ml)
    assert abs(int(model.array.sum()) - int(standard.array.sum())) <= 1  # iso-volume
    assert report["model"]["kind"] == "iso-volume"
    assert 0.0 <= report["recurrence"]["standard"]["coverage"] <= 1.0
    assert (out / "plan.png").read_bytes()[:4] == b"\x89PNG"

    code, stdout, _ = run(["plan", "--density", f["density"], "--core", f["core"], "--threshold", "0.1",
                           "--out", tmp_path / "thr"], capsys)
    model = json.loads(stdout)["model"]
    assert code == 0 and model["kind"] == "threshold" and model["threshold"] == 0.1
    thresholded = read_volume(tmp_path / "thr" / "ctv_model.nii.gz").array
    np.testing.assert_array_equal(thresholded, read_volume(f["density"]).array >= 0.1)


@pytest.mark.parametrize("extra, message", [
    (["--margin-mm", "-3"], "--margin-mm: must be a number >= 0"),
    (["--threshold", "1.5"], "threshold must lie in (0, 1]"),
    (["--core-labels", "7"], "tumor core is empty"),
])
def test_plan_bad_input(tmp_path, plan_inputs, capsys, extra, message):
    f = plan_inputs
    args = ["plan", "--density", f["density"], "--core", f["core"], "--out", tmp_path / "o"] + extra
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse rejects malformed numbers itself, also with exit code 2
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
