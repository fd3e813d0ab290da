"""The neural surrogate: network shapes and range, the seed-centred crop, run-time refusals, dataset shards, a tiny
training run (16^3 crops, width 4) that lowers the loss and resumes."""
import copy
import json

import numpy as np
import pytest
import torch

from conftest import phantom_tissue
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.forward import Seed
from TumorPersonalizationLib.imaging.tissue import TissueMaps
from TumorPersonalizationLib.imaging.volume import Geometry, Volume
from TumorPersonalizationLib.surrogate import config as surrogate_config
from TumorPersonalizationLib.surrogate.crop import extract_box, paste_crop, sample_crop
from TumorPersonalizationLib.surrogate.model import (Surrogate, SurrogateDomain, SurrogateRegion, load_surrogate,
                                                     simulate)
from TumorPersonalizationLib.surrogate.network import SurrogateNet
from TumorPersonalizationLib.surrogate.training import dataset
from TumorPersonalizationLib.surrogate.training.train import CropSet, augment, region_l1_loss, train

SPACING_MM = 2.0  # the phantom's grid


def tiny_config() -> dict:
    """The shipped config shrunk: 16^3 crops of 4 mm on the 2 mm phantom, width 4, small tumors."""
    config = copy.deepcopy(surrogate_config.load_config())
    config["crop"] = {"size": 16, "spacing_mm": 4.0}
    config["parameters"] = {"dw_mm2_per_day": [0.05, 0.3], "rho_per_day": [0.02, 0.1], "days": [30.0, 120.0]}
    config["acceptance"].update(visible_min_ml=0.05)
    config["anatomies"] = {"train": ["mni"], "val": ["mni"], "test": ["sri24"]}
    config["deformation"] = {"amplitude_mm": [0.0, 3.0], "smoothness_mm": 10.0}
    config["dataset"] = {"seed": 1, "shard_size": 4, "cases": {"train": 8, "val": 4, "test": 4}}
    config["network"] = {"levels": 2, "channels": [4, 4, 4], "convs_per_block": 1, "parameter_channels": 2}
    # Augmentation off: with 8 cases and 24 steps its noise would hide the trend (it has its own test).
    config["training"].update(epochs=12, batch_size=4, learning_rate=5e-3, final_learning_rate=2e-3,
                              checkpoint_every=8, augment=False, channels_last=False)
    return config


def phantom_maps() -> np.ndarray:
    return np.stack(phantom_tissue())


def phantom_tissue_maps() -> TissueMaps:
    wm, gm, csf = (Volume.from_array(m, (SPACING_MM,) * 3) for m in phantom_tissue())
    return TissueMaps(wm, gm, csf, source="phantom")


def untrained(config: dict, output: float | None = None) -> Surrogate:
    """A surrogate with random weights; with ``output`` its density is that constant everywhere in the crop."""
    torch.manual_seed(0)
    network = SurrogateNet.from_config(config)
    if output is not None:
        torch.nn.init.zeros_(network.head.weight)
        torch.nn.init.constant_(network.head.bias, output)
    return Surrogate(network, config)


@pytest.fixture
def one_thread():
    """Tiny networks gain nothing from a second thread, and an OpenMP team slows badly on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two training shards and one validation shard of the tiny config, grown in the phantom."""
    config = tiny_config()
    folder = tmp_path_factory.mktemp("surrogate_data")
    dataset.check_manifest(folder, config, create=True)
    for split, count in (("train", 2), ("val", 1)):
        for index in range(count):
            shard = dataset.make_shard({"mni": phantom_maps()}, config, split, index)
            dataset.write_shard(shard, dataset.shard_path(folder, split, index))
    return config, folder


# ------------------------------------------------------------------------------------------------------ network
def test_network_maps_tissue_and_parameters_to_a_density_in_the_unit_interval():
    torch.manual_seed(0)
    network = SurrogateNet(16, 3, channels=(4, 4, 4), convs_per_block=1, parameter_channels=2)
    torch.nn.init.normal_(network.head.weight, std=1.0)  # a large output range, so the clamp is exercised
    tissue, parameters = torch.rand(2, 3, 16, 16, 16), torch.rand(2, 3)
    density = network(tissue, parameters)
    assert density.shape == (2, 1, 16, 16, 16)
    assert float(density.detach().min()) == 0.0 and float(density.detach().max()) == 1.0  # clamped both sides
    density.sum().backward()  # the straight-through clamp passes gradients where the value is clamped
    assert float(network.head.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16, 16\)"):
        network(torch.rand(2, 3, 8, 8, 8), parameters)
    with pytest.raises(InputError, match="halve"):
        SurrogateNet(18, 3, channels=(4, 4, 4))


# ------------------------------------------------------------------------------------------------------ crop
def test_crop_at_the_grid_edge_is_zero_padded_and_paste_back_inverts_it():
    array = np.arange(10 * 11 * 12, dtype=np.float32).reshape(10, 11, 12) + 1.0
    seed = np.array([0.5, 5.5, 11.5])  # equal spacings and a half-integer seed: crop voxels on source voxels
    crop = sample_crop(array, seed, 8, (2.0,) * 3, 2.0)
    expected = extract_box(array, [-3, 2, 8], [8, 8, 8])
    np.testing.assert_array_equal(crop, expected)
    assert np.all(crop[:3] == 0) and np.all(crop[:, :, 7:] == 0)  # beyond the grid: zeros, not wrapped rows
    assert not np.isin(array[-3:], crop).any()  # the far side of the grid never appears in the pad
    back = paste_crop(crop, seed, array.shape, (2.0,) * 3, 2.0)
    inside = np.zeros(array.shape, bool)
    inside[0:5, 2:10, 8:12] = True
    np.testing.assert_array_equal(back[inside], array[inside])
    assert np.all(back[~inside] == 0)


def test_coarser_crop_near_the_brain_boundary_keeps_zero_tissue_outside_the_head():
    maps = phantom_maps()
    brain = maps[0] + maps[1] > 0.5
    seed = np.argwhere(brain)[np.argmin(np.argwhere(brain)[:, 0])].astype(float)  # the brain's lowest-i voxel
    crop = sample_crop(maps, seed, 16, (SPACING_MM,) * 3, 4.0)
    assert crop.shape == (3, 16, 16, 16)
    assert crop.min() >= 0 and crop.sum(axis=0).max() <= 1 + 1e-5
    # Crop voxels whose centres lie more than the smoothing reach outside the grid hold no tissue.
    centres_i = seed[0] + (np.arange(16) - 7.5) * 2.0
    assert np.all(crop[:, centres_i < -4] == 0) and crop[:, centres_i > 4].sum() > 0


def test_crop_follows_a_flip_of_the_grid():
    # The seed sits at the cube's centre point, so flipping the grid flips the crop exactly: the network sees the
    # same anatomy, mirrored, whatever the grid's orientation.
    maps = phantom_maps()
    seed = np.array([17.3, 20.6, 15.2])
    flipped_seed = seed.copy()
    flipped_seed[0] = maps.shape[1] - 1 - seed[0]
    crop = sample_crop(maps, seed, 16, (SPACING_MM,) * 3, 4.0)
    flipped = sample_crop(maps[:, ::-1], flipped_seed, 16, (SPACING_MM,) * 3, 4.0)
    np.testing.assert_allclose(flipped, crop[:, ::-1], atol=1e-5)


# ------------------------------------------------------------------------------------------------------ run time
def test_simulate_returns_the_density_on_the_tissue_grid_zero_outside_the_crop():
    config = tiny_config()
    tissue = phantom_tissue_maps()
    seed = Seed(voxel=(20.0, 22.0, 10.0))  # the cube reaches beyond the grid's k = 0 face
    density = simulate(tissue, 0.1, 0.05, 60.0, seed, surrogate=untrained(config, output=0.5))
    assert density.geometry.is_close(tissue.geometry)
    # The cube: 16 voxels of 4 mm, i.e. seed +- 16 voxels of 2 mm (both faces included).
    cube = np.zeros(density.shape, bool)
    cube[4:37, 6:39, 0:27] = True
    np.testing.assert_allclose(density.array[cube], 0.5, atol=1e-6)
    assert np.all(density.array[~cube] == 0)
    assert density.array.min() >= 0 and density.array.max() <= 1


def test_seed_outside_the_brain_is_refused_with_a_clear_message():
    config, tissue = tiny_config(), phantom_tissue_maps()
    surrogate = untrained(config)
    with pytest.raises(InputError, match=r"seed at voxel \(0.0, 0.0, 0.0\).*CSF or background"):
        simulate(tissue, 0.1, 0.05, 60.0, Seed(voxel=(0.0, 0.0, 0.0)), surrogate=surrogate)
    with pytest.raises(InputError, match="outside the image"):
        simulate(tissue, 0.1, 0.05, 60.0, Seed(voxel=(80.0, 0.0, 0.0)), surrogate=surrogate)
    centre = (np.asarray(tissue.geometry.shape) - 1) / 2.0  # the phantom's ventricle: CSF
    with pytest.raises(InputError, match="CSF or background"):
        simulate(tissue, 0.1, 0.05, 60.0, Seed(voxel=tuple(centre)), surrogate=surrogate)


@pytest.mark.parametrize("dw, rho, days, message", [
    (5.0, 0.05, 60.0, r"Dw = 5 mm\^2/day lies outside the surrogate's trained range \[0.05, 0.3\] mm\^2/day"),
    (0.1, 0.001, 60.0, r"rho = 0.001 1/day lies outside .* \[0.02, 0.1\] 1/day"),
    (0.1, 0.05, 2000.0, r"T = 2000 days lies outside .* \[30, 120\] days; use the numerical solver"),
    (0.1, float("nan"), 60.0, r"rho = nan"),
])
def test_parameters_outside_the_trained_range_are_refused(dw, rho, days, message):
    with pytest.raises(InputError, match=message):
        simulate(phantom_tissue_maps(), dw, rho, days, Seed(voxel=(20.0, 22.0, 8.0)),
                 surrogate=untrained(tiny_config()))


def test_other_ratio_and_missing_csf_are_refused():
    config, tissue = tiny_config(), phantom_tissue_maps()
    with pytest.raises(InputError, match="ratio 100.*trained with ratio 10"):
        simulate(tissue, 0.1, 0.05, 60.0, Seed(voxel=(20.0, 22.0, 8.0)), ratio=100.0, surrogate=untrained(config))
    without_csf = TissueMaps(tissue.wm, tissue.gm, None)
    with pytest.raises(InputError, match="needs a CSF map"):
        simulate(without_csf, 0.1, 0.05, 60.0, Seed(voxel=(20.0, 22.0, 8.0)), surrogate=untrained(config))


def test_surrogate_domain_batches_like_the_solver_domain():
    config = tiny_config()
    domain = SurrogateDomain(*phantom_tissue(), (SPACING_MM,) * 3, surrogate=untrained(config))
    seeds = np.array([[20.0, 22.0, 8.0], [10.0, 22.0, 18.0]])
    batch = domain.simulate_batch([0.1, 0.2], [0.05, 0.03], [60.0, 90.0], seeds, steps=None, workers=2)
    assert batch.shape == (2, 40, 44, 36) and batch.dtype == np.float32
    np.testing.assert_allclose(domain.simulate(0.2, 0.03, 90.0, seeds[1], parallel=False), batch[1], atol=1e-6)
    with pytest.raises(InputError, match="seed of batch member 1"):
        domain.simulate_batch([0.1, 0.1], [0.05, 0.05], [60.0, 60.0], [[20.0, 22.0, 8.0], [0.0, 0.0, 0.0]])


def test_region_prediction_is_the_whole_grid_prediction_cut_to_the_region():
    # A calibration's ROI: a box inside the tissue grid. The crops must still read the anatomy outside the box,
    # so the ROI's densities are exactly the whole-grid densities on the box's voxels.
    config, tissue = tiny_config(), phantom_tissue_maps()
    surrogate = untrained(config)
    g = tissue.geometry
    start = np.array([6, 10, 4])
    region = Geometry((20, 18, 16), g.spacing_mm, g.index_to_ras(start), g.direction_ras)
    roi = SurrogateRegion(tissue, region, surrogate)
    seeds_in_region = np.array([[8.0, 12.0, 6.0], [4.5, 6.0, 10.0]])
    on_region = roi.simulate_batch([0.1, 0.2], [0.05, 0.03], [60.0, 90.0], seeds_in_region, steps=None)
    whole = SurrogateDomain(*phantom_tissue(), (SPACING_MM,) * 3, surrogate=surrogate)
    on_grid = whole.simulate_batch([0.1, 0.2], [0.05, 0.03], [60.0, 90.0], seeds_in_region + start)
    box = (slice(None),) + tuple(slice(a, a + n) for a, n in zip(start, region.shape))
    np.testing.assert_allclose(on_region, on_grid[box], atol=1e-6)
    assert on_region.max() > 0
    with pytest.raises(InputError, match="CSF or background"):  # the phantom's ventricle, inside the region
        roi.check_seed((np.asarray(tissue.geometry.shape) - 1) / 2.0 - start)


def save_untrained(path, config) -> None:
    torch.manual_seed(0)
    torch.save({"state_dict": SurrogateNet.from_config(config).state_dict(), "config": config}, path)


def test_calibration_runs_on_the_surrogate_forward_model(tmp_path):
    # TMCMC's likelihood with the surrogate as its forward model: the ROI densities come from the network (untrained
    # here, with the calibration prior's full ranges), seeds outside WM/GM score -inf like the solver's.
    from TumorPersonalizationLib.inference.likelihood import CalibrationProblem, Observation, build_prior
    from TumorPersonalizationLib.synthetic import synthetic_case

    config = tiny_config()
    config["parameters"] = surrogate_config.load_config()["parameters"]
    save_untrained(tmp_path / "s.pt", config)
    tissue = phantom_tissue_maps()
    case = synthetic_case(tissue, 0.3, 0.05, 150.0, tuple(tissue.geometry.index_to_ras([12, 22, 18])),
                          uc_t1gd=0.7, uc_flair=0.25, sigma_alpha=0.05)
    observation = Observation(case.t1gd, case.flair)
    prior = build_prior(observation)
    problem = CalibrationProblem(tissue.wm, tissue.gm, observation, prior, csf=tissue.csf, forward="surrogate",
                                 surrogate_weights=tmp_path / "s.pt")
    z = prior.sample(6, np.random.default_rng(0))
    outside = z[0].copy()
    outside[3:6] = tissue.geometry.index_to_ras([0, 0, 0])  # x, y, z are sampled in mm (not log-scaled)
    values = problem(np.vstack([z, outside]))
    assert values.shape == (7,) and values[-1] == -np.inf
    assert np.isfinite(values[:-1]).sum() >= 3
    with pytest.raises(InputError, match="needs a CSF map"):
        CalibrationProblem(tissue.wm, tissue.gm, observation, prior, forward="surrogate",
                           surrogate_weights=tmp_path / "s.pt")


def test_simulate_command_with_the_surrogate_writes_the_density_on_the_tissue_grid(tmp_path, capsys):
    from TumorPersonalizationLib.cli import main
    from TumorPersonalizationLib.imaging.io import read_volume, write_volume

    config = tiny_config()
    save_untrained(tmp_path / "s.pt", config)
    tissue = phantom_tissue_maps()
    paths = {k: write_volume(getattr(tissue, k), tmp_path / f"{k}.nii.gz") for k in ("wm", "gm", "csf")}
    argv = ["simulate", "--solver", "surrogate", "--surrogate-weights", str(tmp_path / "s.pt"),
            "--dw", "0.1", "--rho", "0.05", "--days", "60", "--seed-voxel", "20", "22", "10",
            "--out", str(tmp_path / "density.nii.gz"), "--quiet"]
    for k, path in paths.items():
        argv += [f"--{k}", str(path)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["solver"] == "surrogate"
    density = read_volume(tmp_path / "density.nii.gz")
    assert density.geometry.is_close(tissue.geometry)
    assert 0 <= density.array.min() and density.array.max() <= 1 and density.array[0, 0, 0] == 0
    assert main([("5000" if a == "60" else a) for a in argv]) == 2  # T outside the trained range
    assert "trained range" in capsys.readouterr().err


def test_weights_load_with_weights_only_and_bad_files_are_refused(tmp_path):
    config = tiny_config()
    network = SurrogateNet.from_config(config)
    path = tmp_path / "surrogate.pt"
    torch.save({"state_dict": network.state_dict(), "config": config}, path)
    loaded = load_surrogate(path)
    assert loaded.size == 16 and loaded.spacing_mm == 4.0
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)
    torch.save({"model": network.state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match="not a weights file"):
        load_surrogate(tmp_path / "checkpoint.pt")
    with pytest.raises(InputError, match="not found.*surrogate_train.py"):
        load_surrogate(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------------------ data
def test_dataset_shard_round_trip_and_manifest(shards, tmp_path):
    config, folder = shards
    shard = dataset.read_shard(dataset.shard_path(folder, "train", 0))
    assert shard["tissue"].shape == (4, 3, 16, 16, 16) and shard["tissue"].dtype == np.uint8
    assert shard["density"].shape == (4, 16, 16, 16) and shard["density"].dtype == np.float16
    assert 0 <= shard["density"].min() and shard["density"].max() <= 1
    ranges = surrogate_config.parameter_ranges(config)
    assert np.all((shard["parameters"] >= ranges[:, 0]) & (shard["parameters"] <= ranges[:, 1]))
    assert int(shard["drawn"]) == 4 + int(shard["rejected"].sum()) and str(shard["anatomy"]) == "mni"
    # The same config redraws the same shard; a written shard reads back unchanged.
    again = dataset.make_shard({"mni": phantom_maps()}, config, "train", 0)
    np.testing.assert_array_equal(again["parameters"], shard["parameters"])
    dataset.write_shard(again, tmp_path / "copy.npz")
    for key, value in dataset.read_shard(tmp_path / "copy.npz").items():
        if key != "simulation_seconds":  # the only field that is not drawn: wall time
            np.testing.assert_array_equal(value, shard[key])
    data = dataset.load_split(folder, "train", limit=6)
    assert len(data["parameters"]) == 6 and data["tissue"].shape[0] == 6
    changed = copy.deepcopy(config)
    changed["acceptance"]["visible_level"] = 0.3
    with pytest.raises(InputError, match="acceptance"):
        dataset.check_manifest(folder, changed)


def test_held_out_anatomy_cannot_train_and_acceptance_rules_name_the_reason():
    config = tiny_config()
    config["anatomies"]["train"] = ["mni", "sri24"]
    with pytest.raises(InputError, match="held out"):
        dataset.check_anatomies(config)
    config = tiny_config()
    density = np.zeros((40, 44, 36), np.float32)
    seed = np.array([20.0, 22.0, 18.0])
    assert dataset.rejection(density, seed, SPACING_MM, config) == "invisible"
    density[15:25, 17:27, 13:23] = 0.9
    assert dataset.rejection(density, seed, SPACING_MM, config) is None
    density[0, 0, 0] = 0.2  # outside the 32 mm cube around the seed
    assert dataset.rejection(density, seed, SPACING_MM, config) == "fills the brain"


# ------------------------------------------------------------------------------------------------------ training
def test_augmentation_moves_tissue_and_density_together():
    tissue = torch.rand(2, 3, 6, 6, 6)
    density = tissue[:, :1].clone()
    t, d = augment(tissue, density, np.random.default_rng(3))
    torch.testing.assert_close(t[:, :1], d)
    assert not torch.equal(t, tissue)


def test_tiny_training_lowers_the_loss_and_resumes(shards, tmp_path, one_thread):
    config, folder = shards
    train_data = dataset.load_split(folder, "train", limit=8)
    cases = CropSet(train_data, config, torch.device("cpu"))

    def loss_of(network):
        with torch.no_grad():
            tissue, parameters, target = cases.batch(np.arange(len(cases)))
            return float(region_l1_loss(network(tissue, parameters), target, tissue, config["loss"]))

    torch.manual_seed(int(config["training"]["seed"]))
    before = loss_of(SurrogateNet.from_config(config).eval())  # train() starts from this same initialisation
    out = tmp_path / "run"
    stopped = train(config, folder, out, max_minutes=0.0, log=lambda line: None)
    assert not stopped["finished"] and stopped["step"] == 1
    finished = train(config, folder, out, log=lambda line: None)
    assert finished["finished"] and finished["step"] == finished["total_steps"] == 24
    after = loss_of(load_surrogate(out / surrogate_config.WEIGHTS_NAME).network)
    assert after < 0.9 * before, (before, after)  # measured: 0.80 x
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log if "epoch" in e] == list(range(1, 13))
    assert {"dice 0.2", "dice 0.4", "dice 0.8", "mae wm", "mae gm", "val_loss"} <= set(log[-1])
    assert train(config, folder, out, log=lambda line: None)["finished"]  # a finished run is not redone


def test_a_tumor_that_outgrows_the_surrogates_cube_is_reported(tmp_path, capsys):
    from TumorPersonalizationLib.cli import main
    from TumorPersonalizationLib.surrogate.model import crop_edge_density

    crops = np.zeros((2, 8, 8, 8), np.float32)
    crops[0, 3:5, 3:5, 3:5] = 1.0
    crops[1, 4, 6, 2] = 0.3  # one voxel inside a face
    np.testing.assert_allclose(crop_edge_density(crops), [0.0, 0.3])
    np.testing.assert_allclose(crop_edge_density(crops, layers=1), [0.0, 0.0])
    # The shipped network in the bundled atlas: the README's example tumor fills more than the 128 mm cube.
    base = ["simulate", "--solver", "surrogate", "--seed-mm", "-25", "-10", "20", "--quiet",
            "--out", str(tmp_path / "d.nii.gz")]
    assert main(base + ["--dw", "0.5", "--rho", "0.05", "--days", "300"]) == 0
    assert "reaches the surrogate's 128 mm cube" in capsys.readouterr().err
    assert main(base + ["--dw", "0.1", "--rho", "0.05", "--days", "100"]) == 0
    assert "reaches" not in capsys.readouterr().err
