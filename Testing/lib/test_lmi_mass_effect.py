"""Learn-Morph-Infer on the mass-effect model: its training data, the solver behind the fits, and the pipeline end to
end on a tumor grown with mass effect in known tissue maps (its displacement known too)."""
import copy
import json

import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, read_volume, write_volume
from TumorPersonalizationLib.lmi import config as lmi_config
from TumorPersonalizationLib.lmi.models import default_weights, model_dir
from TumorPersonalizationLib.metrics import dice_at_levels
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain
from TumorPersonalizationLib.models.mass_effect import AtGamma, MassEffectDomain

ME_CONFIG = model_dir("mass-effect") / "config.json"


def network_arrays(config):
    tissue = lmi_config.network_tissue(config)
    return tissue.wm.array, tissue.gm.array, tissue.csf.array, tissue.wm.geometry.spacing_mm


def test_mass_effect_cases_are_grown_with_mass_effect_and_kept_by_the_acceptance_bounds():
    from TumorPersonalizationLib.lmi.training import dataset

    config = lmi_config.load_config(ME_CONFIG)
    assert lmi_config.growth_model(config) == "mass-effect"
    assert dataset.parameter_names(config)[-1] == "gamma_pa"
    wm, gm, csf, spacing = network_arrays(config)
    shard = dataset.make_shard(wm, gm, csf, spacing, config, "train", 7, size=3)
    parameters, labels = shard["parameters"], shard["labels"]
    assert parameters.shape == (3, 9) and shard["drawn"] >= 3
    assert np.all((parameters[:, 8] >= 0) & (parameters[:, 8] <= 10000))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    me, fk = MassEffectDomain(wm, gm, csf, spacing), Domain(wm, gm, spacing)
    moved = 0
    for p, case in zip(parameters, labels):
        assert dataset.accepted(case, voxel_ml, config["acceptance"])
        # The stored masks are the mass-effect model's lesion, not the Fisher-Kolmogorov one it was screened with.
        density = me.simulate(p[0], p[1], p[2], p[3:6], p[8], parallel=False).density
        np.testing.assert_array_equal(case, dataset.image_case(density, p[6], p[7]))
        without = dataset.image_case(fk.simulate(p[0], p[1], p[2], p[3:6], parallel=False), p[6], p[7])
        moved += int(np.count_nonzero(without != case) > 0)
    assert moved >= 1
    # The Fisher-Kolmogorov config's draws do not change: gamma is drawn after them.
    candidates = dataset.seed_candidates(wm, gm, 0.5)
    plain = dataset.draw_parameters(np.random.default_rng(3), config["sampling"], candidates)
    with_gamma = dataset.draw_parameters(np.random.default_rng(3), config["sampling"], candidates, (0.0, 1.0))
    np.testing.assert_array_equal(plain, with_gamma[:8])


def test_the_fits_solver_at_gamma_zero_is_the_fisher_kolmogorov_solver():
    wm, gm, csf, spacing = network_arrays(lmi_config.load_config())
    seed = (30.0, 25.0, 38.0)
    at_zero = AtGamma(MassEffectDomain(wm, gm, csf, spacing), 0.0)
    np.testing.assert_array_equal(at_zero.inside, Domain(wm, gm, spacing).inside)
    reference = Domain(wm, gm, spacing).simulate(0.3, 0.05, 200.0, seed, parallel=False)
    assert np.abs(at_zero.simulate(0.3, 0.05, 200.0, seed, parallel=False) - reference).max() < 1e-4
    pushed = AtGamma(MassEffectDomain(wm, gm, csf, spacing), 8000.0)
    pushed.simulate(0.3, 0.05, 200.0, seed, parallel=False)
    assert pushed.last.stats["max_displacement_mm"] > 1.0
    with pytest.raises(InputError, match="gamma"):
        AtGamma(MassEffectDomain(wm, gm, csf, spacing), -1.0)


def test_a_warm_start_must_fit_the_network_it_starts():
    from TumorPersonalizationLib.lmi.training.train_network import _initial_state

    config = lmi_config.load_config(ME_CONFIG)
    state = _initial_state(config)
    assert state.keys() == __import__("torch").load(default_weights(), weights_only=True)["state_dict"].keys()
    wider = copy.deepcopy(config)
    wider["network"]["width"] = 8
    with pytest.raises(InputError, match="network section differs"):
        _initial_state(wider)


GAMMA_PA = 6000.0


@pytest.fixture(scope="module")
def mass_effect_patient(tmp_path_factory):
    """The atlas' anatomy on a 2 mm grid, a tumor grown in it with mass effect (its masks, density and displacement
    known), written to files."""
    from TumorPersonalizationLib.forward import Seed, simulate_mass_effect
    from TumorPersonalizationLib.imaging.atlas import load_atlas
    from TumorPersonalizationLib.imaging.tissue import TissueMaps, regrid_geometry, resample_tissue

    atlas = load_atlas()
    g = regrid_geometry(atlas.t1.geometry, 2.0)
    geometry = Geometry(g.shape, g.spacing_mm, np.add(g.origin_ras_mm, (1.0, -0.5, 0.7)), g.direction_ras)
    tissue = resample_tissue(TissueMaps(atlas.wm, atlas.gm, atlas.csf, atlas.t1_stripped), geometry, "atlas")
    grown = simulate_mass_effect(tissue, 0.2, 0.04, 300.0, Seed(ras_mm=(-28.0, -12.0, 22.0)), gamma_pa=GAMMA_PA)
    truth = grown.density.array
    folder = tmp_path_factory.mktemp("mass_effect_patient")
    files = {name: write_volume(volume, folder / f"{name}.nii.gz") for name, volume in (
        ("t1", tissue.background), ("wm", tissue.wm), ("gm", tissue.gm), ("csf", tissue.csf),
        ("t1gd", tissue.wm.like((truth >= 0.7).astype(np.uint8))),
        ("flair", tissue.wm.like((truth >= 0.25).astype(np.uint8))), ("truth", grown.density))}
    return dict(files, displacement=grown.displacement)


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mass_effect_lmi_finds_the_tumor_and_its_push(tmp_path, mass_effect_patient, capsys):
    import SimpleITK as sitk

    p = mass_effect_patient
    out, settings = tmp_path / "out", tmp_path / "settings.json"
    settings.write_text(json.dumps({"refine_evaluations": 40}))  # the coarse fit's budget (it stops at ~70-130)
    args = ["personalize", "--method", "lmi", "--model", "mass-effect", "--gamma", GAMMA_PA, "--t1", p["t1"],
            "--t1gd", p["t1gd"], "--flair", p["flair"], "--wm", p["wm"], "--gm", p["gm"], "--csf", p["csf"],
            "--out", out, "--quiet", "--settings", settings]
    code, _, stderr = run(args, capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "mass-effect" and report["parameters"]["gamma"]["value"] == GAMMA_PA
    assert report["weights"].endswith("mass_effect/inverse_net.pt")
    t1 = read_volume(p["t1"])
    density = read_volume(out / "density.nii.gz")
    dice = dice_at_levels(density, read_volume(p["truth"]), (0.1, 0.5))
    assert dice["0.1"] >= 0.75 and dice["0.5"] >= 0.7, dice
    # The displacement is a field ITK reads as a transform on the T1's grid, and it pushes where the truth pushed:
    # near the tumor, the predicted and the true tissue displacement point the same way and are of similar size.
    field = sitk.ReadImage(str(out / "displacement.nii.gz"), sitk.sitkVectorFloat64)
    predicted = sitk.GetArrayFromImage(field).transpose(2, 1, 0, 3)
    sitk.DisplacementFieldTransform(field)  # takes the image's buffer: read the array first
    true = p["displacement"].to_sitk()
    true = sitk.GetArrayFromImage(true).transpose(2, 1, 0, 3)
    assert predicted.shape == true.shape == t1.shape + (3,)
    moving = np.linalg.norm(true, axis=-1) > 0.5
    assert moving.sum() > 100
    cosine = (predicted[moving] * true[moving]).sum(axis=-1) / (
        np.linalg.norm(predicted[moving], axis=-1) * np.linalg.norm(true[moving], axis=-1) + 1e-12)
    assert np.median(cosine) > 0.8, np.median(cosine)
    ratio = np.linalg.norm(predicted, axis=-1).max() / np.linalg.norm(true, axis=-1).max()
    assert 0.5 < ratio < 2.0, ratio
    for name in ("wm", "gm", "csf"):
        deformed = read_volume(out / f"deformed_{name}.nii.gz")
        assert deformed.geometry.is_close(t1.geometry) and 0.0 <= deformed.array.min() <= deformed.array.max() <= 1.0


def test_mass_effect_lmi_refuses_what_it_cannot_do(tmp_path, mass_effect_patient, capsys):
    p = mass_effect_patient
    base = ["personalize", "--method", "lmi", "--t1", p["t1"], "--t1gd", p["t1gd"], "--flair", p["flair"],
            "--quiet"]
    code, _, err = run(base + ["--model", "mass-effect", "--fast", "--out", tmp_path / "o1"], capsys)
    assert code == 2 and "runs in the patient's tissue" in err, err
    code, _, err = run(base + ["--gamma", "3000", "--out", tmp_path / "o2"], capsys)
    assert code == 2 and "give --model mass-effect" in err, err
    code, _, err = run(base + ["--model", "mass-effect", "--gamma", "-5", "--out", tmp_path / "o3"], capsys)
    assert code == 2 and "gamma" in err, err
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"weights": str(default_weights())}))
    code, _, err = run(base + ["--model", "mass-effect", "--settings", settings, "--out", tmp_path / "o4"], capsys)
    assert code == 2 and "trained on the fisher-kolmogorov model" in err, err
    code, _, err = run(base + ["--model", "mass-effect", "--wm", p["wm"], "--gm", p["gm"], "--out", tmp_path / "o5"],
                       capsys)
    assert code == 2 and "CSF" in err, err
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3", "o4", "o5"))


def test_the_mass_effect_configs_differ_from_the_fisher_kolmogorov_ones_only_in_model_and_data():
    # Same grid, ranges, acceptance, targets and network: the warm start and the pipeline's grids line up.
    for name in ("config.json", "config_full_gpu.json"):
        fk, me = (lmi_config.load_config(folder / name) for folder in (model_dir(), model_dir("mass-effect")))
        for section in ("grid", "sampling", "acceptance", "targets", "input", "network"):
            assert me[section] == fk[section], (name, section)
        assert lmi_config.growth_model(fk) == "fisher-kolmogorov" and me["model"]["gamma_pa"] == [0.0, 10000.0]
        assert me["dataset"]["seed"] != fk["dataset"]["seed"]  # other cases than the Fisher-Kolmogorov data's
