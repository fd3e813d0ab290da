"""Personalization end to end on a small phantom (fast settings), and the CLI's answers to bad input."""
import json

import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, Volume, read_volume, write_volume
from TumorPersonalizationLib.imaging.tissue import TissueMaps
from TumorPersonalizationLib.methods import tmcmc
from TumorPersonalizationLib.inference.posterior import posterior_draws
from TumorPersonalizationLib.personalization import Case
from TumorPersonalizationLib.synthetic import synthetic_case

from conftest import phantom_tissue

GEOMETRY = Geometry((40, 44, 36), (2.0, 2.0, 2.0), (-40.0, -44.0, -36.0))


@pytest.fixture(scope="module")
def phantom_case():
    wm, gm, csf = phantom_tissue()
    tissue = TissueMaps(Volume(wm, GEOMETRY), Volume(gm, GEOMETRY), Volume(csf, GEOMETRY))
    seed = tuple(GEOMETRY.index_to_ras([12, 22, 18]))
    case = synthetic_case(tissue, 0.3, 0.05, 150.0, seed, uc_t1gd=0.7, uc_flair=0.25, sigma_alpha=0.05,
                          pet_b=0.9, pet_sigma=0.05)
    return tissue, case


def test_tmcmc_personalization_writes_every_output(tmp_path, phantom_case):
    tissue, case = phantom_case
    patient = Case.from_volumes(case.t1gd, case.flair, pet=case.pet, wm=tissue.wm, gm=tissue.gm, csf=tissue.csf)
    fractions = []
    result = tmcmc.personalize(patient, tmcmc.Settings(samples=96, workers=1, predictive_draws=6),
                               progress=lambda fraction, message: fractions.append(fraction))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.density.geometry == GEOMETRY and result.density_std.geometry == GEOMETRY
    assert 0.0 <= result.density.array.min() and result.density.array.max() <= 1.0
    assert result.samples.shape[1] == len(result.sample_names) == 14  # 11 parameters + mu1, mu2, v
    report = result.write(tmp_path, truth=case.truth)
    for name in ("density.nii.gz", "density_std.nii.gz", "density_map.nii.gz", "report.json", "overview.png",
                 "posterior.png", "plan.png", "ctv_standard.nii.gz", "ctv_model.nii.gz", "ctv_probabilistic.nii.gz"):
        assert (tmp_path / name).is_file(), name
    assert read_volume(tmp_path / "density.nii.gz").geometry.is_close(GEOMETRY)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["forward_runs"] == report["forward_runs"] > 96
    assert on_disk["plans"]["core_inside_model_plan"] == 1.0
    assert "identifiable" in on_disk["identifiability"]
    # Even with a small population the MAP density must look like the truth.
    truth = case.density.array
    overlap = np.logical_and(result.density_map.array >= 0.25, truth >= 0.25).sum() * 2 / (
        (result.density_map.array >= 0.25).sum() + (truth >= 0.25).sum())
    assert overlap > 0.8


def test_multifidelity_tmcmc_switches_grids_and_finds_the_tumor(phantom_case):
    tissue, case = phantom_case
    patient = Case.from_volumes(case.t1gd, case.flair, wm=tissue.wm, gm=tissue.gm, csf=tissue.csf)
    messages = []
    result = tmcmc.personalize(patient, tmcmc.Settings(samples=96, workers=1, predictive_draws=4,
                                                       coarse_grid_mm=4.0, switch_beta=0.01),
                               progress=lambda fraction, message: messages.append((fraction, message)))
    report = result.report
    assert [f for f, _ in messages] == sorted(f for f, _ in messages)
    assert any("coarse grid" in m for _, m in messages) and any("fine grid" in m for _, m in messages)
    assert report["settings"]["coarse_grid_mm"] == [4.0] * 3 and report["settings"]["grid_mm"] == [2.0] * 3
    runs = report["forward_runs_by_grid"]
    assert runs["coarse"] > 0 and runs["fine"] > 0
    assert report["forward_runs"] == runs["coarse"] + runs["fine"] + runs["posterior_predictive"]
    phases = [s["phase"] for s in report["stages"]]
    assert phases[0] == "coarse" and "bridge" in phases and phases[-1] == "fine"
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(report["stages"], report["stages"][1:]))
    truth = case.density.array
    overlap = np.logical_and(result.density_map.array >= 0.25, truth >= 0.25).sum() * 2 / (
        (result.density_map.array >= 0.25).sum() + (truth >= 0.25).sum())
    assert overlap > 0.8


def test_multifidelity_settings_are_checked():
    with pytest.raises(InputError, match="coarser than grid_mm"):
        tmcmc.Settings(grid_mm=3.0, coarse_grid_mm=2.0).check()
    with pytest.raises(InputError, match="numerical forward model"):
        tmcmc.Settings(forward="surrogate", coarse_grid_mm=4.0).check()


@pytest.fixture
def case_files(tmp_path, phantom_case):
    tissue, case = phantom_case
    files = {}
    for name, volume in (("wm", tissue.wm), ("gm", tissue.gm), ("csf", tissue.csf), ("t1gd", case.t1gd),
                         ("flair", case.flair), ("pet", case.pet)):
        files[name] = write_volume(volume, tmp_path / f"{name}.nii.gz")
    empty = write_volume(case.t1gd.like(np.zeros(GEOMETRY.shape, np.uint8)), tmp_path / "empty.nii.gz")
    negative = write_volume(case.pet.like(case.pet.array - 0.5), tmp_path / "negative_pet.nii.gz")
    shifted = write_volume(Volume(case.t1gd.array, Geometry(GEOMETRY.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))),
                           tmp_path / "shifted.nii.gz")
    files.update(empty=empty, negative=negative, shifted=shifted)
    return files


@pytest.mark.parametrize("swap, message", [
    ({"--t1gd": "empty"}, "T1Gd segmentation is empty"),
    ({"--t1gd": "flair", "--flair": "t1gd"}, "smaller than the T1Gd"),
    ({"--pet": "negative"}, "negative values"),
    ({"--t1gd": "shifted"}, "different grid"),
])
def test_personalize_bad_input(tmp_path, case_files, capsys, swap, message):
    args = {"--t1gd": "t1gd", "--flair": "flair", "--pet": "pet", "--wm": "wm", "--gm": "gm", "--csf": "csf"}
    args.update(swap)
    argv = ["personalize", "--method", "tmcmc", "--out", str(tmp_path / "out"), "--quiet"]
    for flag, key in args.items():
        argv += [flag, str(case_files[key])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_personalize_cli_small_run(tmp_path, case_files, capsys):
    argv = ["personalize", "--method", "tmcmc", "--t1gd", str(case_files["t1gd"]), "--flair",
            str(case_files["flair"]), "--wm", str(case_files["wm"]), "--gm", str(case_files["gm"]), "--csf",
            str(case_files["csf"]), "--samples", "48", "--workers", "1", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["parameters"]) >= {"Dw", "rho", "T", "x", "y", "z", "mu1", "mu2"}
    assert (tmp_path / "out" / "density.nii.gz").is_file()


def test_posterior_draws_keep_the_weight_of_repeated_samples():
    # 90 copies of one sample (as TMCMC's resampling makes them) and 10 others: 90 % of the posterior's mass.
    samples = np.vstack([np.tile([[1.0, 2.0]], (90, 1)), np.arange(20.0).reshape(10, 2) + 10.0])
    distinct, repeat = posterior_draws(samples, 40, np.random.default_rng(3))
    drawn = samples[distinct][repeat]
    assert len(drawn) == 40 and len(np.unique(samples[distinct], axis=0)) == len(distinct)
    heavy = np.all(drawn == [1.0, 2.0], axis=1).mean()
    # Without replacement from 90 of 100: the heavy sample's share is hypergeometric, mean 0.9 (sd ~0.03);
    # drawing among distinct samples gave it 1 in 11.
    assert 0.8 <= heavy <= 1.0, heavy
    assert len(distinct) == 1 + (~np.all(drawn == [1.0, 2.0], axis=1)).sum()


def test_a_negative_seed_is_an_argument_error(tmp_path, case_files, capsys):
    argv = ["personalize", "--method", "tmcmc", "--t1gd", str(case_files["t1gd"]), "--flair",
            str(case_files["flair"]), "--seed", "-1", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 2
    assert "seed (--seed) must be at least 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
