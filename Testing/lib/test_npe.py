"""Neural posterior estimation (method ``npe``): the embedding's shapes, the parameter scaling, importance weights,
a tiny training run, the simulator against the synthetic data, the weights file, and the method end to end on a
small phantom with tiny networks (the amortised round from a stand-in weights file)."""
import json
import threading

import numpy as np
import pytest
import torch

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.errors import Cancelled, InputError
from TumorPersonalizationLib.imaging import Geometry, Volume, read_volume, write_volume
from TumorPersonalizationLib.imaging.tissue import TissueMaps
from TumorPersonalizationLib.inference.likelihood import Observation, build_prior
from TumorPersonalizationLib.inference.priors import BoxPrior
from TumorPersonalizationLib.methods import npe
from TumorPersonalizationLib.npe import estimator as est
from TumorPersonalizationLib.npe.config import check_config
from TumorPersonalizationLib.npe.embedding import LabelMapEmbedding
from TumorPersonalizationLib.npe.observation import thresholded_label_map
from TumorPersonalizationLib.npe.parameters import ParameterSpace, ridge_days
from TumorPersonalizationLib.npe.rounds import effective_sample_size, importance_weights, posterior_change
from TumorPersonalizationLib.npe.simulator import case_problem
from TumorPersonalizationLib.personalization import Case
from TumorPersonalizationLib.synthetic import synthetic_case

from conftest import phantom_tissue

GEOMETRY = Geometry((40, 44, 36), (2.0, 2.0, 2.0), (-40.0, -44.0, -36.0))
TINY = {"observation": {"crop_size": 16, "crop_spacing_mm": 3.0},
        "embedding": {"channels": [4, 8], "features": 16},
        "mdn": {"components": 2, "hidden_features": 24},
        "training": {"batch_size": 32, "learning_rate": 0.001, "validation_fraction": 0.15,
                     "stop_after_epochs": 3, "max_epochs": 4, "seed": 0}}


@pytest.fixture(scope="module")
def phantom_case():
    wm, gm, csf = phantom_tissue()
    tissue = TissueMaps(Volume(wm, GEOMETRY), Volume(gm, GEOMETRY), Volume(csf, GEOMETRY))
    seed = tuple(GEOMETRY.index_to_ras([12, 22, 18]))
    case = synthetic_case(tissue, 0.3, 0.05, 150.0, seed, uc_t1gd=0.7, uc_flair=0.25)  # thresholded, as NPE's
    return tissue, case


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("npe") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def test_embedding_shapes():
    net = LabelMapEmbedding(in_channels=4, size=16, channels=(4, 8), features=12)
    x = torch.rand(3, 4, 16, 16, 16)
    assert net(x).shape == (3, 12)
    assert torch.equal(net(x), net(x.reshape(3, -1)))  # sbi may hand observations over flattened
    with pytest.raises(InputError, match="crop_size must be a whole number >= 8 divisible by 2"):
        check_config(dict(TINY, observation={"crop_size": 12, "crop_spacing_mm": 3.0}, embedding={
            "channels": [4, 8, 16], "features": 8}))


def test_parameter_scaling_round_trip():
    # An oblique-free but flipped and permuted grid: seed offsets are along the grid's axes, not RAS.
    geometry = Geometry((30, 30, 30), (1.5, 2.0, 2.5), (10.0, -5.0, 3.0), (0, -1, 0, 1, 0, 0, 0, 0, -1))
    space = ParameterSpace(geometry, (14.2, 15.0, 16.5), pet=True)
    rng = np.random.default_rng(0)
    scaled = np.column_stack([rng.uniform(0.1, 4.0, 50), rng.uniform(0.2, 3.0, 50), rng.uniform(-1, 1, (50, 3)),
                              rng.uniform(0.6, 0.8, 50), rng.uniform(0.05, 0.6, 50), rng.uniform(0.6, 1.0, 50),
                              rng.uniform(0.1, 2.5, 50)])
    natural = space.to_natural(scaled)
    np.testing.assert_allclose(space.to_scaled(natural), scaled, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(space.to_natural(space.to_scaled(natural)), natural, rtol=1e-10)
    names = dict(zip(space.natural_names, natural[0]))
    assert np.isclose(np.sqrt(names["Dw"] * names["T"]), 10.0 * scaled[0, 0])  # mu1 in mm, scale 10 mm
    assert np.isclose(names["sigma"], 0.1 * scaled[0, 8])
    # The seed offset is mm along the grid's axes from the crop centre.
    index = geometry.ras_to_index([names["x"], names["y"], names["z"]])
    np.testing.assert_allclose((index - space.centre_index) * geometry.spacing_mm, 10.0 * scaled[0, 2:5])
    prior = BoxPrior(("Dw", "rho", "T", "x", "y", "z", "uc_T1Gd", "uc_FLAIR", "sigma_alpha", "b", "sigma"),
                     (0.02, 0.002, 20, -5, -5, -5, 0.6, 0.05, 0.05, 0.6, 0.01),
                     (1.5, 0.2, 500, 5, 5, 5, 0.8, 0.6, 0.08, 1.02, 0.25), (True,) * 3 + (False,) * 8)
    low, high = space.box(prior)
    np.testing.assert_allclose(low * space.scale, [np.sqrt(0.4), np.sqrt(0.04), -5, -5, -5, 0.6, 0.05, 0.6, 0.01])
    np.testing.assert_allclose(high * space.scale, [np.sqrt(750), np.sqrt(100), 5, 5, 5, 0.8, 0.6, 1.02, 0.25])
    with pytest.raises(InputError, match="expected 9 columns"):
        space.to_natural(scaled[:, :7])
    # Reports draw T from TMCMC's prior given mu1, mu2: any T maps back to the same scaled point.
    mu1_sq, mu2_sq = (10 * scaled[:, 0]) ** 2, (3 * scaled[:, 1]) ** 2
    inside = (np.maximum.reduce([np.full(50, 20.0), mu1_sq / 1.5, mu2_sq / 0.2])
              <= np.minimum.reduce([np.full(50, 500.0), mu1_sq / 0.02, mu2_sq / 0.002]))  # some T fits
    assert inside.sum() > 10
    days = ridge_days(10 * scaled[inside, 0], 3 * scaled[inside, 1], prior, rng)
    along = space.to_natural(scaled[inside], days)
    np.testing.assert_allclose(space.to_scaled(along), scaled[inside], rtol=1e-10, atol=1e-10)
    assert np.all((days >= 20 - 1e-9) & (days <= 500 + 1e-9))
    assert np.all((along[:, 0] >= 0.02 - 1e-9) & (along[:, 0] <= 1.5 + 1e-9))
    assert np.all((along[:, 1] >= 0.002 - 1e-9) & (along[:, 1] <= 0.2 + 1e-9))


def test_importance_weights_for_a_known_proposal():
    # Prior uniform on [0, 1]; proposal N(0.4, 0.3^2) truncated to it: p / q ∝ 1 / N(theta; 0.4, 0.3).
    rng = np.random.default_rng(1)
    theta = rng.normal(0.4, 0.3, 40_000)
    theta = theta[(theta >= 0) & (theta <= 1)]
    log_q = -0.5 * ((theta - 0.4) / 0.3) ** 2 + 7.0  # any constant cancels
    w = importance_weights(np.zeros_like(theta), log_q)
    expected = np.exp(0.5 * ((theta - 0.4) / 0.3) ** 2)
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-10)
    # The weighted draws reproduce the prior's moments (mean 1/2, second moment 1/3).
    assert abs(np.sum(w * theta) - 0.5) < 0.01 and abs(np.sum(w * theta ** 2) - 1 / 3) < 0.01
    assert 0 < effective_sample_size(w) < len(theta)
    assert effective_sample_size(importance_weights(np.zeros(10), np.zeros(10))) == pytest.approx(10)
    assert importance_weights([-np.inf, 0.0], [0.0, 0.0]).tolist() == [0.0, 1.0]
    same = rng.normal(size=(100, 3))
    assert posterior_change(same, same) == 0.0 and posterior_change(same, same + 1.0) > 0.9


def _toy_observations(theta):
    """A ball whose centre moves with theta[0] and whose radius grows with theta[1], on an 8^3 grid."""
    axis = torch.linspace(-1, 1, 8)
    i, j, k = torch.meshgrid(axis, axis, axis, indexing="ij")
    r2 = (i[None] - theta[:, :1, None, None]) ** 2 + j[None] ** 2 + k[None] ** 2
    return (r2 < (0.2 + 0.3 * theta[:, 1:, None, None]) ** 2).float()[:, None]


def test_a_tiny_training_run_lowers_the_loss():
    config = dict(TINY, observation={"crop_size": 8, "crop_spacing_mm": 1.0}, embedding={"channels": [4],
                                                                                          "features": 8},
                  training=dict(TINY["training"], max_epochs=10, stop_after_epochs=10, batch_size=50,
                                                learning_rate=0.003))
    prior = est.box_prior([-0.5, 0.0], [0.5, 1.0])
    torch.manual_seed(0)
    theta = prior.sample((250,))
    trainer = est.make_trainer(prior, config, in_channels=1)
    estimator, summary = est.append_and_train(trainer, theta, _toy_observations(theta), None, config)
    losses = trainer._summary["training_loss"]
    assert summary["epochs"] == len(losses) >= 10 and losses[-1] < losses[0] - 0.5, losses
    posterior = est.build_posterior(trainer, estimator, prior, _toy_observations(torch.tensor([[0.3, 0.5]]))[0])
    draws = est.sample(posterior, 500, seed=0)
    assert abs(draws[:, 0].mean() - 0.3) < 0.2  # the ball's position is learnt already


def test_simulator_reproduces_the_synthetic_observation(phantom_case):
    tissue, case = phantom_case
    observation = Observation(case.t1gd, case.flair)
    problem = case_problem(tissue, observation, build_prior(observation), TINY)
    truth = np.array([[case.truth[k] for k in ("Dw", "rho", "T", "x", "y", "z", "uc_T1Gd", "uc_FLAIR")]])
    theta = problem.space.to_scaled(truth)
    assert np.all(theta >= problem.low) and np.all(theta <= problem.high)
    outside = theta.copy()
    outside[0, 2:5] = problem.space.to_scaled(np.array([[0.3, 0.05, 150.0, 38.0, 42.0, 34.0, 0.7, 0.25]]))[0, 2:5]
    x = problem.simulator(np.vstack([theta, outside]))
    assert x.shape == (2, 16 ** 3) and np.isnan(x[1]).all()  # a seed outside the brain cannot grow
    simulated = problem.assemble(x[:1])[0]
    assert simulated.shape == problem.observed.shape == (4, 16, 16, 16)
    # Same parameters, same label map: only the region of interest's no-flux faces differ from the full grid.
    assert np.abs(simulated[0] - problem.observed[0]).mean() < 0.01 and problem.observed[0].max() > 0.9
    np.testing.assert_array_equal(simulated[1:], problem.observed[1:])
    assert thresholded_label_map(np.array([0.1, 0.3, 0.8]), 0.7, 0.25).tolist() == [0.0, 0.5, 1.0]


def test_weights_file_round_trip(tmp_path):
    prior = est.box_prior([-1.0, 0.0], [1.0, 1.0])
    theta = prior.sample((20,))
    config = dict(TINY, observation={"crop_size": 8, "crop_spacing_mm": 1.0}, embedding={"channels": [4],
                                                                                          "features": 8})
    estimator = est.density_estimator_builder(config, 1)(theta, _toy_observations(theta))
    path = est.save_weights(tmp_path / "npe.pt", estimator, config, ["a", "b"], 1, [-1, 0], [1, 1])
    loaded, saved = est.load_weights(path)
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(theta[:4], _toy_observations(theta[:4])),
                              estimator.log_prob(theta[:4], _toy_observations(theta[:4])))
    assert saved["names"] == ["a", "b"] and saved["config"] == config
    (tmp_path / "bad.pt").write_bytes(b"not a weights file")
    with pytest.raises(InputError, match="NPE weights .*bad.pt: cannot read them"):
        est.load_weights(tmp_path / "bad.pt")


def test_npe_end_to_end_from_the_prior(tmp_path, phantom_case, tiny_config):
    tissue, case = phantom_case
    patient = Case.from_volumes(case.t1gd, case.flair, wm=tissue.wm, gm=tissue.gm, csf=tissue.csf)
    fractions = []
    settings = npe.Settings(simulations=48, max_rounds=2, workers=1, weights="none", config=str(tiny_config),
                            predictive_draws=3, posterior_samples=300, tolerance=1e-6)
    result = npe.personalize(patient, settings, progress=lambda fraction, message: fractions.append(fraction))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.density.geometry == GEOMETRY and 0.0 <= result.density.array.min() <= 1.0
    assert result.samples.shape == (300, 11)  # 8 parameters + mu1, mu2, v
    report = result.write(tmp_path, truth=case.truth)
    for name in ("density.nii.gz", "density_std.nii.gz", "density_map.nii.gz", "report.json", "posterior.png",
                 "ctv_probabilistic.nii.gz"):
        assert (tmp_path / name).is_file(), name
    assert read_volume(tmp_path / "density.nii.gz").geometry.is_close(GEOMETRY)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    rounds = on_disk["rounds"]
    assert [r["proposal"] for r in rounds] == ["prior", "round 1 posterior"]
    assert on_disk["forward_runs"] == report["forward_runs"] == 2 * 48 + 1 + 3
    assert rounds[1]["change"] is not None and 0 < rounds[1]["effective_sample_fraction"] <= 1
    assert on_disk["settings"]["amortised"].startswith("skipped: weights 'none'")
    # Every posterior draw lies in the prior box, and mu1, mu2 are what the draws' Dw, rho, T give.
    names = list(result.sample_names)
    samples = result.samples
    np.testing.assert_allclose(samples[:, names.index("mu1")],
                               np.sqrt(samples[:, names.index("Dw")] * samples[:, names.index("T")]))
    low, high = (np.array(on_disk["settings"]["prior"][k]) for k in ("low", "high"))
    scale = np.array(on_disk["settings"]["prior"]["scale"])
    assert low[0] * scale[0] <= samples[:, names.index("mu1")].min()
    assert samples[:, names.index("mu1")].max() <= high[0] * scale[0]


def test_npe_starts_from_amortised_weights_and_can_be_cancelled(tmp_path, phantom_case, tiny_config):
    tissue, case = phantom_case
    patient = Case.from_volumes(case.t1gd, case.flair, wm=tissue.wm, gm=tissue.gm, csf=tissue.csf)
    observation = Observation(case.t1gd, case.flair)
    problem = case_problem(tissue, observation, build_prior(observation), TINY)
    # A stand-in for the shipped amortised network: untrained, built on draws of this case's prior box.
    torch.manual_seed(0)
    theta = est.box_prior(problem.low, problem.high).sample((40,))
    x = torch.as_tensor(np.repeat(problem.observed[None], 40, axis=0)) + 0.1 * torch.rand(40, 4, 16, 16, 16)
    network = est.density_estimator_builder(TINY, 4)(theta, x)
    weights = est.save_weights(tmp_path / "npe.pt", network, TINY, problem.space.names, 4, problem.low,
                               problem.high)
    settings = npe.Settings(simulations=24, max_rounds=1, workers=1, weights=str(weights), predictive_draws=2,
                            posterior_samples=200)
    result = npe.personalize(patient, settings)
    assert [r["proposal"] for r in result.report["rounds"]] == ["amortised posterior"]
    assert result.report["settings"]["amortised"] == f"used: {weights}"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        npe.personalize(patient, settings, cancel=cancel)


@pytest.mark.parametrize("values, message", [
    ({"simulations": 100, "fast": True}, "give simulations / max_rounds (--simulations, --settings) or fast"),
    ({"simulations": 5}, "simulations (--simulations) must be at least 20, got 5"),
    ({"tolerance": 0.0}, "tolerance must be positive"),
])
def test_settings_checks(values, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        npe.Settings(**values)


def test_bad_input_is_one_line(tmp_path, phantom_case, capsys):
    tissue, case = phantom_case
    files = {}
    for name, volume in (("wm", tissue.wm), ("gm", tissue.gm), ("t1gd", case.t1gd), ("flair", case.flair)):
        files[name] = str(write_volume(volume, tmp_path / f"{name}.nii.gz"))
    empty = str(write_volume(case.t1gd.like(np.zeros(GEOMETRY.shape, np.uint8)), tmp_path / "empty.nii.gz"))
    base = ["personalize", "--method", "npe", "--flair", files["flair"], "--wm", files["wm"], "--gm", files["gm"],
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main(base + ["--t1gd", empty]) == 2
    assert "T1Gd segmentation is empty" in capsys.readouterr().err
    assert main(base + ["--t1gd", files["t1gd"], "--weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "weights (--weights)" in err and "file not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_amortised_data_and_training(tmp_path):
    from TumorPersonalizationLib.npe.training import dataset
    from TumorPersonalizationLib.npe.training.train import checkpoint_path, train_amortised

    config = dict(TINY, training=dict(TINY["training"], max_epochs=2),
                  dataset={"seed": 1, "shard_size": 6, "cases": {"train": 6, "val": 3, "test": 3},
                           "simulation": {"spacing_mm": 2.0, "ratio": 10.0, "box_mm": 40.0},
                           "ranges": {"mu1": [3.0, 8.0], "mu2": [1.5, 4.0], "seed_offset_mm": 15.0,
                                      "uc_T1Gd": [0.6, 0.8], "uc_FLAIR": [0.05, 0.6]},
                           "acceptance": {"t1gd_min_ml": 0.01, "flair_max_fraction_of_box": 0.9},
                           "sampling": {"seed_min_wm_plus_gm": 0.5}},
                  anatomies={"train": ["mni"], "val": ["mni"], "test": ["sri24"]},
                  deformation={"amplitude_mm": [0.0, 2.0], "smoothness_mm": 20.0})
    base = {"mni": np.stack(phantom_tissue())}  # the phantom stands in for the atlas
    for split, size in (("train", 6), ("val", 3)):
        shard = dataset.make_shard(base, config, split, 0, size=size)
        assert shard["theta"].shape == (size, 7) and shard["x"].shape == (size, 4, 16, 16, 16)
        low, high = dataset.global_box(config)
        assert np.all(shard["theta"] >= low - 1e-6) and np.all(shard["theta"] <= high + 1e-6)
        assert shard["x"][:, 0].max() == 1.0  # the T1Gd label is in every crop
        dataset.write_shard(shard, dataset.shard_path(tmp_path, split, 0))
    record = train_amortised(config, tmp_path, tmp_path / "npe.pt", val_cases=3, log=lambda text: None)
    assert record["cases"] == 6 and set(record["val_coverage"]) == {"0.5", "0.9"}
    assert record["epochs"] == 2 and not checkpoint_path(tmp_path / "npe.pt").exists()
    estimator, saved = est.load_weights(tmp_path / "npe.pt")
    assert saved["names"] == ["mu1", "mu2", "di", "dj", "dk", "uc_T1Gd", "uc_FLAIR"] and saved["in_channels"] == 4
    # Stopped after every epoch and resumed from the checkpoint, training ends where the uninterrupted run did.
    resumed = tmp_path / "resumed.pt"
    assert train_amortised(config, tmp_path, resumed, val_cases=0, max_minutes=0, log=lambda text: None) is None
    assert checkpoint_path(resumed).exists() and not resumed.exists()
    again = train_amortised(config, tmp_path, resumed, val_cases=0, max_minutes=0, log=lambda text: None)
    assert again["epochs"] == 2 and again["validation_loss"] == record["validation_loss"]
    for name, value in est.load_weights(resumed)[0].state_dict().items():
        torch.testing.assert_close(value, estimator.state_dict()[name], rtol=0, atol=0)
