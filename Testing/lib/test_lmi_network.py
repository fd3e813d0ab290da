"""Learn-Morph-Infer: parameter back-mapping, target scaling, the network's shapes, a tiny training run."""
import copy

import numpy as np
import pytest
import torch

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.lmi import labels as lmi_labels
from TumorPersonalizationLib.lmi.config import load_config, network_domain, target_scaling
from TumorPersonalizationLib.lmi.inputs import N_CHANNELS, assemble, crop_labels
from TumorPersonalizationLib.lmi.network import InverseNet, LesionStatistics, check_network_config, load_network
from TumorPersonalizationLib.lmi.parameters import (FRONT_SPEED_MM_PER_DAY, from_time_independent,
                                                    simulate_time_independent, to_time_independent)
from TumorPersonalizationLib.lmi.training import dataset
from TumorPersonalizationLib.lmi.training.train_network import _Batches, evaluate, train


def test_back_mapping_round_trip_keeps_mu_and_sets_the_front_speed():
    rng = np.random.default_rng(0)
    dw, rho, days = rng.uniform(0.02, 1.5, 50), rng.uniform(0.002, 0.2, 50), rng.uniform(50, 1500, 50)
    mu1, mu2 = to_time_independent(dw, rho, days)
    dw2, rho2, days2 = from_time_independent(mu1, mu2)
    np.testing.assert_allclose(to_time_independent(dw2, rho2, days2), (mu1, mu2), rtol=1e-12)
    np.testing.assert_allclose(2 * np.sqrt(dw2 * rho2), FRONT_SPEED_MM_PER_DAY, rtol=1e-12)
    # With the generating front speed, the original parameters come back exactly.
    np.testing.assert_allclose(from_time_independent(mu1, mu2, 2 * np.sqrt(dw * rho)), (dw, rho, days), rtol=1e-12)
    assert FRONT_SPEED_MM_PER_DAY == pytest.approx(200 / 365.25)  # 200 mm/year
    with pytest.raises(InputError, match="positive"):
        from_time_independent(-1.0, 2.0)


def test_simulating_mu1_mu2_gives_the_density_of_any_dw_rho_t_with_those_values():
    # c(x, T; Dw, rho) = c(x, 1; Dw T, rho T): a tumor grown from (Dw, rho, T) at another front speed than the
    # default one must look the same (only the solver's time steps differ).
    domain, seed = network_domain(load_config()), [40.0, 30.0, 40.0]
    dw, rho, days = 0.4, 0.05, 300.0  # v = 2 sqrt(Dw rho) = 0.28 mm/day, half the default
    mu1, mu2 = to_time_independent(dw, rho, days)
    density = simulate_time_independent(domain, float(mu1), float(mu2), seed)
    reference = domain.simulate(dw, rho, days, seed)
    assert density.shape == domain.inside.shape and (reference >= 0.5).sum() > 50
    assert np.abs(density - reference).max() < 1e-3  # measured: 2e-5; doubling Dw alone: 0.8


def test_target_scaling_maps_the_bounds_to_minus_one_and_one():
    scaling = target_scaling(load_config())
    lo, hi = np.array(scaling.lower), np.array(scaling.upper)
    np.testing.assert_allclose(scaling.scale(np.stack([lo, hi, (lo + hi) / 2])),
                               [[-1] * 5, [1] * 5, [0] * 5], atol=1e-6)
    x = np.random.default_rng(1).uniform(lo, hi, (10, 5))
    np.testing.assert_allclose(scaling.unscale(scaling.scale(x)), x, rtol=1e-5)


def test_labels_encode_the_thesis_input():
    t1gd = np.zeros((4, 4, 4), bool)
    flair = np.zeros((4, 4, 4), bool)
    t1gd[1, 1, 1] = flair[1, 1, 1] = flair[2, 2, 2] = True
    x = lmi_labels.labels_to_input(lmi_labels.encode_labels(t1gd, flair))
    np.testing.assert_allclose(x, 0.666 * t1gd + 0.333 * flair, atol=1e-6)


def test_crops_are_centred_on_the_core_and_carry_the_anatomy_and_the_position():
    labels = np.zeros((1, 30, 30, 30), np.uint8)
    labels[0, 10:13, 14:16, 20:22] = 2  # core centre (11, 14.5, 20.5): half a voxel off the grid in j and k
    labels[0, 8:15, 12:18, 19:24][labels[0, 8:15, 12:18, 19:24] == 0] = 1
    tissue = np.stack([np.full((30, 30, 30), 0.5, np.float32), np.full((30, 30, 30), 0.25, np.float32)])
    crops, origins, centres = crop_labels(labels, 8)
    np.testing.assert_allclose(centres[0], [11.0, 14.5, 20.5])
    x = assemble(crops, origins, tissue)
    assert x.shape == (1, N_CHANNELS, 8, 8, 8)
    np.testing.assert_allclose(x[0, 0], lmi_labels.labels_to_input(crops[0]))
    assert np.all(x[0, 1] == 0.5) and np.all(x[0, 2] == 0.25)  # the crop lies inside the grid
    # Channel 3 + axis: the voxel's index on the whole grid, scaled to [-1, 1].
    index = np.indices((8, 8, 8)) + origins[0][:, None, None, None]
    np.testing.assert_allclose(x[0, 3:], 2.0 * index / 29.0 - 1.0, atol=1e-6)
    config = copy.deepcopy(load_config())
    config["network"]["in_channels"] = 9  # a config whose network takes other channels than the input makes
    with pytest.raises(InputError, match="in_channels is 9, but the network input has 6"):
        train(config, "no-data-needed", "no-run", log=lambda *_: None)


def test_network_output_shape_and_input_check():
    torch.manual_seed(0)
    net = InverseNet(in_channels=6, width=4, blocks=3, convs_per_block=2)
    y = net(torch.rand(2, 6, 16, 16, 16))
    assert y.shape == (2, 5) and torch.all(torch.isfinite(y))
    with pytest.raises(ValueError, match=r"\(B, 6, D, H, W\)"):
        net(torch.rand(2, 1, 16, 16, 16))
    mlp = InverseNet(in_channels=6, width=4, blocks=3, convs_per_block=2, head_hidden=8)
    assert mlp(torch.rand(3, 6, 16, 16, 16)).shape == (3, 5)
    assert [(m.in_features, m.out_features) for m in mlp.head if isinstance(m, torch.nn.Linear)] == [(4 + 6, 8), (8, 5)]
    # Configs of heads that did not ship (the thesis' one linear layer, no lesion statistics) are refused.
    for change in ({"head_hidden": 0}, {"lesion_statistics": False}):
        config = copy.deepcopy(load_config())
        config["network"].update(change)
        with pytest.raises(InputError, match="MLP head fed the lesion statistics"):
            InverseNet.from_config(config)


def test_lesion_statistics_measure_the_masks_in_ml_and_average_the_tissue_under_them():
    S = LesionStatistics
    rng = np.random.default_rng(3)
    t1gd = np.zeros((2, 12, 12, 12), bool)
    flair = rng.random((2, 12, 12, 12)) < 0.3
    t1gd[0, 2:5, 2:5, 2:5] = True  # 27 voxels; the second case has no core
    flair |= t1gd
    wm, gm = rng.random((2, 12, 12, 12)), rng.random((2, 12, 12, 12))
    crops = np.stack([lmi_labels.encode_labels(a, b) for a, b in zip(t1gd, flair)])
    x = np.concatenate([lmi_labels.labels_to_input(crops)[:, None], wm[:, None], gm[:, None]], axis=1)
    voxel_ml = 0.125  # 5 mm voxels
    stats = S(voxel_ml)(torch.from_numpy(x).float()).numpy()
    expected = []
    for c in range(2):
        row = [(np.log(m[c].sum() * voxel_ml + S.ML_FLOOR) - S.LOG_ML_CENTRE) / S.LOG_ML_SCALE for m in (t1gd, flair)]
        for mask in (t1gd[c], flair[c]):
            for tissue in (wm[c], gm[c]):
                mean = tissue[mask].mean() if mask.any() else 0.0
                row.append((mean - S.TISSUE_CENTRE) / S.TISSUE_SCALE)
        expected.append(row)
    np.testing.assert_allclose(stats, expected, rtol=1e-5, atol=1e-5)
    # The same 27 mL cube on a 3 mm and on a 1.5 mm grid: the same numbers (volumes in mL, not voxels).
    coarse, fine = np.zeros((1, 3, 20, 20, 20), np.float32), np.zeros((1, 3, 40, 40, 40), np.float32)
    coarse[0, 0, 5:15, 5:15, 5:15], fine[0, 0, 10:30, 10:30, 10:30] = 0.999, 0.999
    a = S(0.027)(torch.from_numpy(coarse)).numpy()
    b = S(1.5 ** 3 / 1000)(torch.from_numpy(fine)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a[0, 0] == pytest.approx((np.log(27.0 + S.ML_FLOOR) - S.LOG_ML_CENTRE) / S.LOG_ML_SCALE, abs=1e-5)


def _tiny_dataset(folder, n_cases=48):
    """Cases on a 16^3 slab phantom: one Gaussian-like blob per case, masks at fixed levels."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), axis=-1).astype(float)
    for split, count in (("train", n_cases), ("val", 16)):
        labels, targets = [], []
        for _ in range(count):
            centre, radius = rng.uniform(5, 10, 3), rng.uniform(2, 5)
            r = np.linalg.norm(grid - centre, axis=-1)
            labels.append(lmi_labels.encode_labels(r < radius, r < radius * 1.6))
            targets.append([radius * 5, radius, *centre])
        shard = {"labels": np.array(labels), "targets": np.array(targets, np.float32),
                 "parameters": np.zeros((count, 8)), "drawn": np.int64(count)}
        dataset.write_shard(shard, dataset.shard_path(folder, split, 0))
    dataset.write_tissue(folder, np.full((16,) * 3, 0.6, np.float32), np.full((16,) * 3, 0.3, np.float32))


def test_tiny_training_run_lowers_the_loss_and_resumes(tmp_path):
    _tiny_dataset(tmp_path / "data")
    config = copy.deepcopy(load_config())
    config["network"].update(width=4, blocks=3, convs_per_block=2)
    config["input"]["crop_size"] = 12
    config["training"].update(epochs=6, batch_size=8, learning_rate=3e-3)
    config["dataset"]["cases"]["train"] = 48
    config["targets"] = {"lower": [0, 0, -4, -4, -4], "upper": [40, 8, 4, 4, 4]}
    val = dataset.load_split(tmp_path / "data", "val")
    torch.manual_seed(config["training"]["seed"])
    batches = _Batches(val, dataset.load_tissue(tmp_path / "data"), config, torch.device("cpu"))
    before, _ = evaluate(InverseNet.from_config(config), batches, 8)
    # Interrupt after the first step (time budget 0), then resume to the end.
    first = train(config, tmp_path / "data", tmp_path / "run", max_minutes=0.0, log=lambda *_: None)
    assert not first["finished"] and first["step"] == 1
    result = train(config, tmp_path / "data", tmp_path / "run", log=lambda *_: None)
    assert result["finished"] and result["step"] == 6 * 48 // 8
    assert result["val_mse"] < 0.5 * before, (before, result["val_mse"])
    model, saved_config = load_network(tmp_path / "run" / "inverse_net.pt")
    assert saved_config["network"]["width"] == 4 and not model.training
    # The interrupted-and-resumed run ends exactly where an uninterrupted one does.
    train(config, tmp_path / "data", tmp_path / "straight", log=lambda *_: None)
    straight, _ = load_network(tmp_path / "straight" / "inverse_net.pt")
    for (name, a), b in zip(model.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), name
    # A dataset with fewer cases than the config asks for is refused, not silently used.
    with pytest.raises(InputError, match="holds 48 training cases, the config asks for 64"):
        train({**config, "dataset": {**config["dataset"], "cases": {"train": 64}}}, tmp_path / "data",
              tmp_path / "short", log=lambda *_: None)
    # A shard missing before the last one is named, not skipped (a later one would stand in for it).
    import shutil
    shutil.copy(dataset.shard_path(tmp_path / "data", "train", 0), dataset.shard_path(tmp_path / "data", "train", 2))
    with pytest.raises(InputError, match="train_00001.npz is missing"):
        dataset.load_split(tmp_path / "data", "train")
    # A checkpoint is not a weights file, and another config cannot resume this run.
    with pytest.raises(InputError, match="not a weights file"):
        load_network(tmp_path / "run" / "checkpoint.pt")
    config["training"]["batch_size"] = 16
    with pytest.raises(InputError, match="another config"):
        train(config, tmp_path / "data", tmp_path / "run", log=lambda *_: None)


def test_the_thesis_size_config_describes_a_valid_setup():
    from TumorPersonalizationLib.imaging.atlas import load_atlas
    from TumorPersonalizationLib.lmi.config import lmi_dir, network_geometry

    config = load_config(lmi_dir() / "config_full_gpu.json")
    geometry = network_geometry(load_atlas(), config)  # raises if the grid does not cover the atlas brain
    assert geometry.shape == (128, 128, 128) and geometry.spacing_mm == (1.5, 1.5, 1.5)
    # The crop covers the same 120 mm as the CPU config's, and offsets scale with the finer voxels.
    cpu = load_config()
    assert config["input"]["crop_size"] * 1.5 == cpu["input"]["crop_size"] * cpu["grid"]["spacing_mm"]
    assert target_scaling(config).upper[2] * 1.5 == target_scaling(cpu).upper[2] * cpu["grid"]["spacing_mm"]
    head = InverseNet.from_config(config).head
    assert head[0].in_features == 64 + LesionStatistics.N_FEATURES  # width 64 pooled, plus the lesion statistics


def test_every_shipped_config_takes_the_channels_its_input_makes():
    from TumorPersonalizationLib.lmi.config import lmi_dir

    configs = sorted(lmi_dir().glob("config*.json"))
    assert len(configs) >= 2  # the CPU one, the thesis-size one
    for path in configs:
        config = load_config(path)
        assert config["network"]["in_channels"] == N_CHANNELS, path.name
        check_network_config(config)


def test_a_dataset_made_with_other_settings_is_refused(tmp_path):
    config = copy.deepcopy(load_config())
    dataset.check_manifest(tmp_path, config)  # no manifest, not asked to create one: accepted as it is
    assert not (tmp_path / dataset.MANIFEST_NAME).exists()
    dataset.check_manifest(tmp_path, config, create=True)
    dataset.check_manifest(tmp_path, config)
    config["dataset"]["cases"]["train"] = 10  # how many cases: not a generation setting
    dataset.check_manifest(tmp_path, config)
    config["sampling"]["uc_flair"] = [0.1, 0.5]
    config["dataset"]["seed"] = 7
    with pytest.raises(InputError, match="sampling, seed differ"):
        dataset.check_manifest(tmp_path, config)
    with pytest.raises(InputError, match="sampling, seed differ"):
        train(config, tmp_path, tmp_path / "run", log=lambda *_: None)
