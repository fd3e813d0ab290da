"""Learn-Morph-Infer end to end: the example patient (another anatomy than the atlas) on a coarser, flipped grid;
refinement against a known truth; bad inputs."""
import json

import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.imaging import Geometry, Volume, read_volume, write_volume
from TumorPersonalizationLib.lmi.config import load_config, network_domain
from TumorPersonalizationLib.lmi.estimators import choose_mu_source
from TumorPersonalizationLib.lmi.parameters import from_time_independent
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.lmi.refinement import SHARP, SMOOTH, mask_fit, nearest_inside, search
from TumorPersonalizationLib.metrics import dice_at_levels
from TumorPersonalizationLib.resources import resources_dir

from example_case import example_patient


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The example patient at 2 mm on a flipped grid, written to files."""
    folder = tmp_path_factory.mktemp("patient")
    return {name: write_volume(volume, folder / f"{name}.nii.gz") for name, volume in example_patient().items()}


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lmi_args(paths, out):
    return ["personalize", "--method", "lmi", "--t1", paths["t1"], "--t1gd", paths["t1gd"], "--flair",
            paths["flair"], "--out", out, "--quiet"]


def settings_file(folder, **values):
    """A ``--settings`` JSON file of ``values`` in ``folder``."""
    path = folder / "settings.json"
    path.write_text(json.dumps({key: str(v) if not isinstance(v, (int, float, str)) else v
                                for key, v in values.items()}))
    return ["--settings", path]


SMALL_BUDGETS = {"refine_evaluations": 12, "refine_fine_evaluations": 6, "refine_polish_evaluations": 6}


def test_end_to_end_writes_patient_space_outputs_that_match_the_truth(tmp_path, patient, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(lmi_args(patient, out), capsys)
    assert code == 0, stderr
    t1 = read_volume(patient["t1"])
    density = read_volume(out / "density.nii.gz")
    assert density.geometry.is_close(t1.geometry)
    for name in ("ctv_standard.nii.gz", "ctv_model.nii.gz"):
        assert read_volume(out / name).geometry.is_close(t1.geometry)
    report = json.loads((out / "report.json").read_text())
    # The default: tissue maps segmented from the T1, the masks fitted on the network grid, simulated in the maps.
    assert set(report["timings_s"]) == {"registration", "tissue_maps", "warp_to_atlas", "network", "refinement",
                                        "simulation"}
    assert report["tissue"]["source"].startswith("segmented from")
    assert report["parameters"]["mu1"]["value"] > 0 and report["registration"]["skull_stripped"]
    assert report["network_estimate"]["mu_from"] == "shape regressor"  # the fit's start
    assert report["network_estimate"]["seed_from"] == "seed regressor"
    assert report["refinement"]["grid"] == "coarse" and report["refinement"]["fine"] is None
    # The seed, inferred in the atlas, mapped back to the patient: near where the tumor was grown from.
    true_seed = json.loads((resources_dir() / "ExamplePatient" / "truth.json").read_text())["seed_ras_mm"]
    assert np.linalg.norm(np.subtract(report["seed_in_patient_ras_mm"], true_seed)) < 10.0
    # The tumor was grown in SRI24's own tissue maps with known parameters: the LMI density must find it.
    dice = dice_at_levels(density, read_volume(patient["truth"]), (0.1, 0.5))
    assert dice["0.1"] >= 0.6 and dice["0.5"] >= 0.5, dice
    assert (out / "overview.png").read_bytes()[:4] == b"\x89PNG"


def test_fast_simulates_the_estimate_as_predicted_in_the_atlas(tmp_path, patient, capsys):
    from TumorPersonalizationLib.methods.lmi import Settings

    fast, explicit = Settings(fast=True), Settings(anatomy="atlas", coarse_fit="off")
    assert (fast.anatomy_used, fast.fitted) == (explicit.anatomy_used, explicit.fitted) == ("atlas", False)
    with pytest.raises(InputError, match="not both"):
        Settings(fast=True, refine=True).check()
    out = tmp_path / "out"
    code, stdout, stderr = run(lmi_args(patient, out) + ["--fast"], capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["tissue"] == {"source": "bundled atlas"} and report["refinement"] is None
    assert set(report["timings_s"]) == {"registration", "warp_to_atlas", "network", "simulation", "warp_to_patient"}
    assert report["network_estimate"]["mu_from"] == "shape regressor"
    dice = dice_at_levels(read_volume(out / "density.nii.gz"), read_volume(patient["truth"]), (0.1, 0.5))
    assert dice["0.1"] >= 0.6 and dice["0.5"] >= 0.5, dice


@pytest.fixture(scope="module")
def atlas_anatomy_patient(tmp_path_factory):
    """A patient with the atlas' anatomy on a 2 mm grid of another origin, its tissue maps, and a tumor grown in
    them with known parameters, written to files (``truth`` holds the true density, ``seed_ras_mm`` the seed)."""
    from TumorPersonalizationLib.imaging.atlas import load_atlas
    from TumorPersonalizationLib.imaging.io import resample
    from TumorPersonalizationLib.imaging.tissue import TissueMaps, regrid_geometry, resample_tissue
    from TumorPersonalizationLib.models.fisher_kolmogorov import Domain

    atlas = load_atlas()
    g = regrid_geometry(atlas.t1.geometry, 2.0)
    geometry = Geometry(g.shape, g.spacing_mm, np.add(g.origin_ras_mm, (1.0, -0.5, 0.7)), g.direction_ras)
    tissue = resample_tissue(TissueMaps(atlas.wm, atlas.gm, atlas.csf, atlas.t1_stripped), geometry, "atlas")
    seed_ras = np.array([-28.0, -12.0, 22.0])
    domain = Domain(tissue.wm.array, tissue.gm.array, geometry.spacing_mm)
    seed_index = np.round(geometry.ras_to_index(seed_ras))
    assert domain.inside[tuple(seed_index.astype(int))]
    truth = domain.simulate(0.2, 0.04, 250.0, seed_index)
    folder = tmp_path_factory.mktemp("atlas_patient")
    files = {name: write_volume(volume, folder / f"{name}.nii.gz") for name, volume in (
        ("t1", tissue.background), ("t1_whole_head", resample(atlas.t1, geometry, "linear")),
        ("wm", tissue.wm), ("gm", tissue.gm), ("csf", tissue.csf),
        ("t1gd", tissue.wm.like((truth >= 0.7).astype(np.uint8))),
        ("flair", tissue.wm.like((truth >= 0.25).astype(np.uint8))), ("truth", tissue.wm.like(truth)))}
    return dict(files, seed_ras_mm=geometry.index_to_ras(seed_index), inside=domain.inside)


def test_patient_tissue_maps_are_simulated_in_and_the_seed_carried_there(tmp_path, atlas_anatomy_patient, capsys):
    p = atlas_anatomy_patient
    out = tmp_path / "out"
    code, _, stderr = run(lmi_args(p, out) + ["--wm", p["wm"], "--gm", p["gm"], "--csf", p["csf"], "--refine"]
                          + settings_file(tmp_path, **SMALL_BUDGETS), capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["simulated_in"].startswith("the patient's tissue maps")
    assert report["fit"]["grid"] == "patient" and "warp_to_patient" not in report["timings_s"]
    assert report["refinement"]["grid"] == "fine"
    assert report["network_estimate"]["mu_from"] == "shape regressor"  # "auto" with a refinement
    # The seed was refined in the patient's space: the report's patient seed is the refined one.
    assert np.allclose(report["seed_in_patient_ras_mm"], report["refinement"]["seed_ras_mm"], atol=0.01)
    assert np.linalg.norm(np.subtract(report["seed_in_patient_ras_mm"], p["seed_ras_mm"])) < 8.0
    density = read_volume(out / "density.nii.gz")
    assert density.geometry.is_close(read_volume(p["t1"]).geometry)
    dice = dice_at_levels(density, read_volume(p["truth"]), (0.1, 0.5))
    assert dice["0.1"] >= 0.75 and dice["0.5"] >= 0.7, dice
    # Simulated in the patient's WM/GM, the tumor stays there (up to the resampling to the T1 grid at its edge).
    from scipy import ndimage

    near_domain = ndimage.binary_dilation(p["inside"])
    assert density.array[~near_domain].max() < 0.05


def test_whole_head_t1_end_to_end(tmp_path, atlas_anatomy_patient, capsys):
    # The same patient given as a whole head: detected as such, registered with its skull, and the tumor found.
    p = atlas_anatomy_patient
    out = tmp_path / "out"
    code, _, stderr = run(lmi_args(dict(p, t1=p["t1_whole_head"]), out), capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["registration"]["skull_stripped"] is False
    density = read_volume(out / "density.nii.gz")
    assert density.geometry.is_close(read_volume(p["t1_whole_head"]).geometry)
    assert np.linalg.norm(np.subtract(report["seed_in_patient_ras_mm"], p["seed_ras_mm"])) < 8.0
    dice = dice_at_levels(density, read_volume(p["truth"]), (0.1, 0.5))
    assert dice["0.1"] >= 0.75 and dice["0.5"] >= 0.7, dice


def test_auto_takes_the_networks_mu_only_for_an_unrefined_simulation_in_the_patients_tissue():
    assert choose_mu_source("auto", patient_tissue_given=True, refine_fit=False) == "network"
    assert choose_mu_source("auto", patient_tissue_given=True, refine_fit=True) == "shape"
    assert choose_mu_source("auto", patient_tissue_given=False, refine_fit=False) == "shape"
    assert choose_mu_source("shape", patient_tissue_given=True, refine_fit=False) == "shape"
    assert choose_mu_source("network", patient_tissue_given=False, refine_fit=True) == "network"
    with pytest.raises(InputError, match="mu_from must be 'auto' or one of"):
        choose_mu_source("volumes", patient_tissue_given=False, refine_fit=False)


def test_patient_tissue_maps_must_share_the_t1_grid(tmp_path, atlas_anatomy_patient, patient, capsys):
    p = atlas_anatomy_patient
    code, _, err = run(lmi_args(patient, tmp_path / "o") + ["--wm", p["wm"], "--gm", p["gm"]], capsys)
    assert code == 2 and "--wm" in err and "grid" in err, err


def test_refine_runs_on_both_grids_and_reports_what_it_did(tmp_path, patient, capsys):
    out = tmp_path / "out"
    code, _, stderr = run(lmi_args(patient, out) + ["--refine", "--anatomy", "atlas"]
                          + settings_file(tmp_path, **SMALL_BUDGETS), capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    refinement = report["refinement"]
    assert "refinement" in report["timings_s"] and refinement["grid"] == "fine"
    assert refinement["coarse"]["evaluations"] <= 12 and refinement["fine"]["evaluations"] <= 6
    assert refinement["polish"]["evaluations"] <= 6
    # The reported seed is the refined one, as simulated (the search keeps it inside the atlas' WM/GM).
    seed = [report["parameters"][axis]["value"] for axis in "xyz"]
    assert np.allclose(seed, refinement["seed_ras_mm"])
    assert report["parameters"]["mu1"]["value"] == pytest.approx(refinement["mu1"])
    # The reported fit is measured on the grid and with the objective the refinement ended with, and is the fit
    # it reached there.
    assert report["fit"]["grid"] == "atlas" and report["fit"]["objective_kind"] == "sharp"
    assert report["fit"]["objective"] == pytest.approx(refinement["polish"]["end"]["objective"], abs=1e-3)
    assert read_volume(out / "density.nii.gz").geometry.is_close(read_volume(patient["t1"]).geometry)


def test_refinement_moves_a_perturbed_estimate_towards_the_truth():
    domain = network_domain(load_config())
    seed = np.array([40.0, 30.0, 40.0])
    assert domain.inside[tuple(seed.astype(int))]
    mu1, mu2 = 8.0, 3.5
    truth = domain.simulate(*(float(v) for v in from_time_independent(mu1, mu2)), seed)
    t1gd, flair = truth >= 0.7, truth >= 0.2
    assert mask_fit(truth, t1gd, flair).objective < 0.08  # the truth itself fits (Dice close to 1)
    start = (mu1 * 1.3, mu2 * 0.8, seed + [2.0, -2.0, 1.0])
    result = search(domain, t1gd, flair, *start, max_evaluations=40)
    assert result.evaluations <= 40
    assert result.end.objective < 0.7 * result.start.objective, result

    def density_error(m1, m2, s):
        return np.abs(domain.simulate(*(float(v) for v in from_time_independent(m1, m2)), s) - truth).mean()

    # Judged against the true density, not the objective the search optimised.
    assert density_error(result.mu1, result.mu2, result.seed_index) < 0.7 * density_error(*start)


def _linear_radial_profile(c_at_6: float, c_at_9: float) -> np.ndarray:
    """A 40^3 density falling linearly with the distance r (voxels) from the centre, given at r = 6 and r = 9."""
    r = np.linalg.norm(np.indices((40, 40, 40)) - 19.5, axis=0)
    slope = (c_at_6 - c_at_9) / 3.0
    return np.clip(c_at_6 - slope * (r - 6.0), 0.0, 1.0)


def test_mask_fit_judges_edges_alike_for_any_steepness_and_integrates_the_levels_out():
    r = np.linalg.norm(np.indices((40, 40, 40)) - 19.5, axis=0)
    t1gd, flair = r <= 6.0, r <= 9.0
    # Both profiles cross a T1Gd level at r = 6 and a FLAIR level at r = 9 (levels on the searched grid).
    steep, diffuse = _linear_radial_profile(0.75, 0.25), _linear_radial_profile(0.55, 0.45)
    fitted = [mask_fit(c, t1gd, flair, scale=np.inf) for c in (steep, diffuse)]
    for fit in fitted:
        assert fit.dice_t1gd > 0.93 and fit.dice_flair > 0.93, fit  # boundary voxels count in part
    assert abs(fitted[0].objective - fitted[1].objective) < 0.01  # fitting the levels: no preference
    assert (fitted[0].uc_t1gd, fitted[0].uc_flair) == pytest.approx((0.75, 0.25), abs=0.03)
    assert (fitted[1].uc_t1gd, fitted[1].uc_flair) == pytest.approx((0.55, 0.45), abs=0.03)
    # Integrating them out: the steep profile explains the masks over a wider range of levels.
    assert mask_fit(steep, t1gd, flair).objective < mask_fit(diffuse, t1gd, flair).objective - 0.005
    # A density far from the lesion explains nothing, and no empty voxel counts towards it.
    away = np.roll(steep, 20, axis=0)
    assert mask_fit(away, t1gd, flair, scale=np.inf).objective > 0.99


def test_the_sharp_objective_comes_close_to_the_hard_dice_the_masks_were_made_with():
    # Masks that are exact thresholds of the density at levels on the sharp objective's level grid: the hard Dice
    # there is 1. The one-voxel ramp of SMOOTH blurs the edge voxels; SHARP's tenth of a voxel nearly does not.
    density = _linear_radial_profile(0.8, 0.3)
    t1gd, flair = density >= 0.6, density >= 0.25
    assert np.isclose(SHARP.t1gd_levels, 0.6).any() and np.isclose(SHARP.flair_levels, 0.25).any()
    sharp = mask_fit(density, t1gd, flair, objective=SHARP, scale=np.inf)
    smooth = mask_fit(density, t1gd, flair, objective=SMOOTH, scale=np.inf)
    assert sharp.dice_t1gd > 0.995 and sharp.dice_flair > 0.995, sharp
    # Any level between the densities of the edge voxels inside and outside a mask makes the same mask.
    assert sharp.uc_t1gd == pytest.approx(0.6, abs=0.01) and sharp.uc_flair == pytest.approx(0.25, abs=0.01)
    assert smooth.dice_t1gd < sharp.dice_t1gd - 0.005 and smooth.objective > sharp.objective + 0.005, smooth
    # The same profile moved by a quarter of a voxel fits worse, and the sharp objective tells it apart more
    # clearly: the sub-voxel differences that separate the truth from its neighbours in a search.
    centre = 19.5 + np.array([0.25, 0.0, 0.0])[:, None, None, None]
    moved = np.clip(0.8 - (0.5 / 3.0) * (np.linalg.norm(np.indices((40, 40, 40)) - centre, axis=0) - 6.0), 0, 1)
    gap = {name: mask_fit(moved, t1gd, flair, objective=o).objective - mask_fit(density, t1gd, flair,
                                                                                 objective=o).objective
           for name, o in (("sharp", SHARP), ("smooth", SMOOTH))}
    assert gap["sharp"] > 2.0 * gap["smooth"] > 0, gap


def test_level_marginal_is_a_soft_minimum_of_the_misfit_over_levels():
    from TumorPersonalizationLib.lmi.refinement import _level_marginal

    assert _level_marginal(np.full(7, 0.8), 100.0) == pytest.approx(0.2)  # one Dice at every level: 1 - Dice
    dice = np.array([0.2, 0.5, 0.9, 0.6])
    assert _level_marginal(dice, np.inf) == pytest.approx(0.1)  # the best level
    assert _level_marginal(dice, 1e-6) == pytest.approx(np.mean(1 - dice), abs=1e-6)  # flat: the mean misfit
    assert 0.1 < _level_marginal(dice, 10.0) < np.mean(1 - dice)


def _full_grid_best_dice(density, mask, levels):
    """Partial-volume Dice at the best level, on the whole grid without cropping (the reference)."""
    step = np.maximum(np.sqrt(sum(g * g for g in np.gradient(density.astype(float)))), 1e-6)
    best = 0.0
    for level in levels:
        predicted = np.clip(0.5 + (density - level) / step, 0, 1)
        best = max(best, 2 * predicted[mask].sum() / (predicted.sum() + mask.sum()))
    return best


def test_mask_fit_crops_without_changing_the_result_even_at_the_grid_edge():
    from TumorPersonalizationLib.lmi.refinement import FLAIR_LEVELS, T1GD_LEVELS

    density = np.roll(_linear_radial_profile(0.8, 0.3), (17, 5), axis=(0, 1))  # centre 2.5 voxels from an edge
    t1gd, flair = density >= 0.7, density >= 0.2  # not the profile's own levels: Dice below 1
    fit = mask_fit(density, t1gd, flair, scale=np.inf)
    assert fit.dice_t1gd == pytest.approx(_full_grid_best_dice(density, t1gd, T1GD_LEVELS), rel=1e-9)
    assert fit.dice_flair == pytest.approx(_full_grid_best_dice(density, flair, FLAIR_LEVELS), rel=1e-9)


def test_mask_fit_does_not_mistake_the_domain_edge_for_a_steep_tumor_edge():
    density = _linear_radial_profile(0.75, 0.25)
    inside = np.ones(density.shape, bool)
    inside[:18] = False  # a CSF slab through the tumor: the solver's density is 0 there
    density[~inside] = 0.0
    t1gd, flair = density >= 0.75, density >= 0.25
    with_domain = mask_fit(density, t1gd, flair, inside, scale=np.inf)
    without = mask_fit(density, t1gd, flair, scale=np.inf)
    assert with_domain.dice_t1gd > 0.93 and with_domain.dice_flair > 0.93, with_domain  # as far from any edge
    assert with_domain.dice_t1gd > without.dice_t1gd + 0.005, (with_domain, without)
    assert with_domain.objective < without.objective - 0.004, (with_domain, without)
    # The nearest-inside map computed once by the caller gives the same fit; a map of another grid is refused.
    assert mask_fit(density, t1gd, flair, inside, np.inf, nearest_inside(inside)) == with_domain
    with pytest.raises(InputError, match="nearest"):
        mask_fit(density, t1gd, flair, inside, np.inf, nearest_inside(inside[:20]))
    # Lesion and density wholly outside the domain: nothing simulated can explain the masks.
    far_slab = np.zeros_like(inside)
    far_slab[36:] = True
    assert mask_fit(density, t1gd, flair, far_slab).objective == pytest.approx(1.0)
    with pytest.raises(InputError, match="domain is empty"):
        nearest_inside(np.zeros_like(inside))


def test_bad_inputs_exit_2_with_the_input_named(tmp_path, patient, capsys):
    t1 = read_volume(patient["t1"])
    shifted = Volume(read_volume(patient["t1gd"]).array, Geometry(t1.shape, t1.spacing_mm,
                                                                  np.add(t1.geometry.origin_ras_mm, 5.0),
                                                                  t1.geometry.direction_ras))
    bad = dict(patient, t1gd=write_volume(shifted, tmp_path / "shifted.nii.gz"))
    code, _, err = run(lmi_args(bad, tmp_path / "o1"), capsys)
    assert code == 2 and "--t1gd" in err and "grid" in err

    empty = dict(patient, t1gd=write_volume(t1.like(np.zeros(t1.shape, np.uint8)), tmp_path / "empty.nii.gz"))
    code, _, err = run(lmi_args(empty, tmp_path / "o2"), capsys)
    assert code == 2 and "empty" in err

    noise = np.random.default_rng(0).uniform(0, 255, t1.shape).astype(np.float32)
    not_brain = dict(patient, t1=write_volume(t1.like(noise), tmp_path / "noise.nii.gz"))
    code, _, err = run(lmi_args(not_brain, tmp_path / "o3"), capsys)
    assert code == 2 and "registration" in err.lower(), err

    code, _, err = run(lmi_args(patient, tmp_path / "o4") + ["--pet", patient["t1"]], capsys)
    assert code == 2 and "--pet is not used by --method lmi" in err
    code, _, err = run(lmi_args(patient, tmp_path / "o4") + ["--wm", patient["t1"]], capsys)
    assert code == 2 and "give both the WM and the GM map" in err, err
    lmi = lmi_args(patient, tmp_path / "o4")
    code, _, err = run(lmi + ["--refine"] + settings_file(tmp_path, refine_fine_evaluations=3), capsys)
    assert code == 2 and "refine_fine_evaluations must be 0 (skip) or at least 6, got 3" in err, err
    code, _, err = run(lmi + ["--refine"] + settings_file(tmp_path, refine_polish_evaluations=2), capsys)
    assert code == 2 and "refine_polish_evaluations must be 0 (skip) or at least 6, got 2" in err, err
    code, _, err = run(lmi + settings_file(tmp_path, shape_weights=tmp_path / "none.pt"), capsys)
    assert code == 2 and "shape regressor weights" in err and "not found" in err, err
    code, _, err = run(lmi + settings_file(tmp_path, mu_from="network", shape_weights=patient["t1"]), capsys)
    assert code == 2 and "shape_weights is not read with mu_from 'network'" in err, err
    code, _, err = run(lmi + settings_file(tmp_path, seed_weights=patient["t1"]), capsys)
    assert code == 2 and "seed regressor weights" in err and "cannot read them" in err, err
    code, _, err = run(lmi + settings_file(tmp_path, seed_from="network", seed_weights=patient["t1"]), capsys)
    assert code == 2 and "seed_weights is not read with seed_from 'network'" in err, err
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in ("o1", "o2", "o3", "o4"))


def test_shipped_estimators_recover_a_simulated_lesion_and_each_replaces_only_its_own_part():
    """A lesion simulated with known mu1, mu2 and seed in the atlas: the shipped shape regressor's mu and
    seed regressor's seed are close to the truth, and each changes only its own part of the network's estimate."""
    from TumorPersonalizationLib.lmi.config import network_tissue
    from TumorPersonalizationLib.lmi.estimators import predict_labels
    from TumorPersonalizationLib.lmi.models import (default_seed_weights, default_shape_weights, default_weights,
                                                    load_seed_model, load_shape_model)
    from TumorPersonalizationLib.lmi.network import load_network
    from TumorPersonalizationLib.lmi.training.atlas_growth import atlas_grids, grow_on_atlas

    model, config = load_network(default_weights())
    shape_model = load_shape_model(default_shape_weights(), config)
    seed_model = load_seed_model(default_seed_weights(), config)
    tissue = network_tissue(config)
    wm_gm = np.stack([tissue.wm.array, tissue.gm.array])
    mu1, mu2, seed = 12.0, 3.0, np.array([40.0, 30.0, 40.0])
    # Grown on the atlas grid, as a patient's masks arrive there; the regressors read it on the 3 mm grid.
    _, network, _ = grow_on_atlas(atlas_grids(config), [*from_time_independent(mu1, mu2), *seed, 0.7, 0.25])
    labels = network.labels[None]
    network_only = predict_labels(model, config, labels, wm_gm)[0]
    combined = predict_labels(model, config, labels, wm_gm, shape_model=shape_model)[0]
    assert np.array_equal(combined[2:], network_only[2:])
    assert np.linalg.norm(combined[2:] - seed) * 3.0 < 10.0  # mm
    assert abs(np.log(combined[0] / mu1)) < 0.3 and abs(np.log(combined[1] / mu2)) < 0.2, combined[:2]
    seeded = predict_labels(model, config, labels, wm_gm, seed_model=seed_model)[0]
    assert np.array_equal(seeded[:2], network_only[:2])
    assert np.linalg.norm(seeded[2:] - seed) * 3.0 < 6.0  # mm
    with pytest.raises(InputError, match="seed regressor weights .* not found"):
        load_seed_model(default_seed_weights().with_name("missing.pt"), config)


def test_the_settings_default_number_of_refinement_simulations_is_the_library_default():
    from TumorPersonalizationLib.lmi.refinement import DEFAULT_EVALUATIONS, FINE_EVALUATIONS, POLISH_EVALUATIONS
    from TumorPersonalizationLib.methods.lmi import Settings

    assert Settings().refine_evaluations == DEFAULT_EVALUATIONS
    assert Settings().refine_fine_evaluations == FINE_EVALUATIONS
    assert Settings().refine_polish_evaluations == POLISH_EVALUATIONS


def test_coarse_to_fine_refinement_carries_the_seed_between_grids_and_fits_the_fine_masks():
    from TumorPersonalizationLib.imaging.tissue import resample_tissue
    from TumorPersonalizationLib.lmi.config import network_tissue
    from TumorPersonalizationLib.lmi.grids import FitGrid, lesion_on_grid
    from TumorPersonalizationLib.lmi.refinement import refine_coarse_to_fine
    from TumorPersonalizationLib.models.fisher_kolmogorov import Domain

    fine_tissue = network_tissue(load_config())  # 64^3 at 3 mm plays the fine grid here
    g = fine_tissue.wm.geometry
    # The coarse grid: 6 mm voxels over the same box; voxel i's centre lies between fine voxels 2i and 2i + 1.
    direction = np.asarray(g.direction_ras).reshape(3, 3)
    coarse_geometry = Geometry((32, 32, 32), (6.0,) * 3,
                               tuple(np.asarray(g.origin_ras_mm) + direction @ np.full(3, 1.5)), g.direction_ras)
    coarse_tissue = resample_tissue(fine_tissue, coarse_geometry, "test")
    fine = Domain(fine_tissue.wm.array, fine_tissue.gm.array, g.spacing_mm)
    coarse = Domain(coarse_tissue.wm.array, coarse_tissue.gm.array, coarse_geometry.spacing_mm)
    mu1, mu2, seed_fine = 8.0, 3.5, np.array([40.0, 30.0, 40.0])
    truth = fine.simulate(*(float(v) for v in from_time_independent(mu1, mu2)), seed_fine)
    t1gd, flair = truth >= 0.7, truth >= 0.2
    coarse_masks = lesion_on_grid(*(fine_tissue.wm.like(m.astype(np.uint8)) for m in (t1gd, flair)),
                                          coarse_geometry)
    coarse_grid = FitGrid(coarse, coarse_geometry, *coarse_masks)
    fine_grid = FitGrid(fine, g, t1gd, flair)
    assert np.allclose(fine_grid.seed_from(coarse_grid, [20.0, 15.0, 20.0]), [40.5, 30.5, 40.5])

    start = (mu1 * 1.3, mu2 * 0.8, (seed_fine - 0.5) / 2 + [1.0, -1.0, 0.5])  # coarse-grid seed, ~8 mm off
    result = refine_coarse_to_fine(coarse_grid, fine_grid, *start, evaluations=40, fine_evaluations=30,
                                   polish_evaluations=20)
    assert result.grid == "fine" and result.evaluations <= 90
    assert np.allclose(g.index_to_ras(result.seed_index), result.seed_ras_mm)
    # The fine stage starts where the coarse one ended and fits the fine masks better than that point did.
    assert result.fine.start.objective > result.fine.end.objective + 0.005, result.fine
    # The polish starts where the fine stage ended (judged by its own, sharper objective) and ends no worse.
    polish = result.polish
    assert polish.start.objective >= polish.end.objective and polish.evaluations <= 20
    fine_end = result.fine.mu1, result.fine.mu2, result.fine.seed_index
    start_density = fine.simulate(*(float(v) for v in from_time_independent(*fine_end[:2])), fine_end[2])
    assert mask_fit(start_density, t1gd, flair, fine.inside, objective=SHARP).objective == pytest.approx(
        polish.start.objective)

    def density_error(m1, m2, s):
        return np.abs(fine.simulate(*(float(v) for v in from_time_independent(m1, m2)), s) - truth).mean()

    start_error = density_error(start[0], start[1], fine_grid.seed_from(coarse_grid, start[2]))
    # Judged against the true density, not the objective. (On this toy pair of grids the fine stage does not
    # lower the density error further than the coarse one; the bench measures its gain on realistic cases.)
    assert density_error(result.mu1, result.mu2, result.seed_index) < 0.5 * start_error
    coarse_only = refine_coarse_to_fine(coarse_grid, fine_grid, *start, evaluations=40, fine_evaluations=0)
    assert coarse_only.grid == "coarse" and coarse_only.fine is None and coarse_only.polish is None
    unpolished = refine_coarse_to_fine(coarse_grid, fine_grid, *start, evaluations=40, fine_evaluations=30,
                                       polish_evaluations=0)
    assert unpolished.polish is None and unpolished.mu1 == unpolished.fine.mu1


@pytest.fixture(scope="module")
def atlas_lesion():
    """A tumor grown on the atlas' 1.5 mm grid with known mu1, mu2 and seed, its masks there (as a patient's arrive
    after the warp) and on the network grid."""
    from TumorPersonalizationLib.imaging.atlas import load_atlas
    from TumorPersonalizationLib.lmi.config import network_geometry
    from TumorPersonalizationLib.lmi.grids import FitGrid, atlas_fit_grid, lesion_on_network_grid

    atlas, config = load_atlas(), load_config()
    fine = atlas_fit_grid(atlas)
    net = FitGrid(network_domain(config), network_geometry(atlas, config), None, None)
    mu1, mu2, seed_net = 10.0, 3.0, np.array([40.0, 30.0, 40.0])
    truth = fine.domain.simulate(*(float(v) for v in from_time_independent(mu1, mu2)), fine.seed_from(net, seed_net))
    t1gd, flair = truth >= 0.7, truth >= 0.25
    network = lesion_on_network_grid(*(atlas.wm.like(m.astype(np.uint8)) for m in (t1gd, flair)), config)
    return {"mu1": mu1, "mu2": mu2, "seed_ras": net.geometry.index_to_ras(seed_net), "t1gd": t1gd, "flair": flair,
            "network": network, "config": config, "truth": truth}


def test_the_estimate_stage_alone_reads_a_lesion_on_the_network_grid(atlas_lesion):
    from TumorPersonalizationLib.lmi import stages
    from TumorPersonalizationLib.lmi.models import load_models

    lesion, config = atlas_lesion["network"], atlas_lesion["config"]
    shipped = stages.estimate(load_models(), lesion)
    assert (shipped.mu_from, shipped.seed_from) == ("shape regressor", "seed regressor") and not shipped.notes
    assert abs(np.log(shipped.mu1 / atlas_lesion["mu1"])) < 0.3
    assert abs(np.log(shipped.mu2 / atlas_lesion["mu2"])) < 0.2
    seed_ras = lesion.geometry.index_to_ras(shipped.seed_index)
    assert np.linalg.norm(seed_ras - atlas_lesion["seed_ras"]) < 6.0  # mm
    assert network_domain(config).inside[tuple(np.rint(shipped.seed_index).astype(int))]
    network = stages.estimate(load_models(mu_from="network", seed_from="network"), lesion)
    assert (network.mu_from, network.seed_from) == ("inverse network", "inverse network")
    assert network.as_dict()["seed_index"] == list(network.seed_index) and network.mu1 != shipped.mu1


def test_the_refine_and_simulate_stages_alone_fit_the_atlas_masks(atlas_lesion):
    from TumorPersonalizationLib.imaging.atlas import load_atlas
    from TumorPersonalizationLib.lmi import stages
    from TumorPersonalizationLib.lmi.grids import FitGrid, atlas_fit_grid

    config, lesion = atlas_lesion["config"], atlas_lesion["network"]
    labels = lesion.labels
    grids = stages.FitGrids(FitGrid(network_domain(config), lesion.geometry, labels == 2, labels > 0),
                            atlas_fit_grid(load_atlas(), atlas_lesion["t1gd"], atlas_lesion["flair"]))
    start = stages.Estimate(atlas_lesion["mu1"] * 1.3, atlas_lesion["mu2"] * 0.8,
                            tuple(lesion.geometry.ras_to_index(atlas_lesion["seed_ras"]) + [1.0, -1.0, 0.5]),
                            "test", "test")
    unrefined = stages.simulate(grids, start)
    assert (unrefined.fit_grid, unrefined.objective_kind) == ("network", "smooth")
    refined = stages.refine(start, grids, config, evaluations=20, fine_evaluations=8, polish_evaluations=6)
    assert refined.grid == "fine" and refined.evaluations <= 34 and refined.as_dict()["polish"]["evaluations"] <= 6
    simulated = stages.simulate(grids, start, refined)
    assert (simulated.fit_grid, simulated.objective_kind) == ("atlas", "sharp")
    assert simulated.fit.objective == pytest.approx(refined.polish.end.objective)  # judged as it was fitted
    assert simulated.density.shape == atlas_lesion["truth"].shape
    error = np.abs(simulated.density - atlas_lesion["truth"]).mean()
    assert error < np.abs(unrefined.density - atlas_lesion["truth"]).mean()


def test_nothing_that_runs_at_inference_imports_the_training_package():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import TumorPersonalizationLib

    lib = Path(TumorPersonalizationLib.__file__).parent
    # Learn-Morph-Infer, the methods and the surrogate: each has a training package that inference never loads.
    folders = (lib / "lmi", lib / "methods", lib / "surrogate")
    runtime = [path for folder in folders for path in sorted(folder.glob("*.py"))]
    for path in runtime:  # imports written anywhere in the file, also inside functions
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "training" not in (node.module or "").split("."), (path, node.module)
            if isinstance(node, ast.Import):
                assert not any("lmi.training" in alias.name for alias in node.names), path
    modules = [f"TumorPersonalizationLib.{p.parent.name}.{p.stem}" for p in runtime if p.stem != "__init__"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if 'training' in m.split('.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=lib.parent).stdout
    assert out.strip() == "[]", out
