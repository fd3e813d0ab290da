"""Shape features against analytic shapes, and the shape regressor's fit."""
import numpy as np
import pytest

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.lmi.shape_features import FEATURE_NAMES, shape_features
from TumorPersonalizationLib.lmi.shape_regressor import DEFAULT_SETTINGS, fit


def _balls(r_core, r_lesion, n=40):
    d = np.linalg.norm(np.indices((n,) * 3) - (n - 1) / 2.0, axis=0)
    return (d <= r_lesion).astype(np.uint8) + (d <= r_core).astype(np.uint8)


def test_concentric_balls():
    labels = _balls(5.0, 11.0)
    tissue = np.stack([np.full(labels.shape, 0.7), np.full(labels.shape, 0.3)])
    f = dict(zip(FEATURE_NAMES, shape_features(labels[None], tissue, 3.0)[0]))
    assert f["rim_median_mm"] == pytest.approx(3.0 * 6.0, abs=3.0)      # radius difference, within a voxel
    assert 0.6 < f["lesion_sphericity"] <= 1.0                          # voxel faces overcount a sphere's area
    assert f["lesion_elongation_1"] == pytest.approx(0.0, abs=0.05)     # isotropic
    assert f["core_to_lesion_centre_mm"] == pytest.approx(0.0, abs=1e-9)
    assert f["lesion_wm"] == pytest.approx(0.7) and f["boundary_wm_fraction"] == 1.0
    elongated = _balls(5.0, 11.0)[:, :, 12:28]
    g = dict(zip(FEATURE_NAMES, shape_features(elongated[None], tissue[:, :, :, 12:28], 3.0)[0]))
    assert g["lesion_elongation_1"] > 0.1  # a ball cut to a slab is flatter than it is wide


def test_empty_core_and_grid_mismatch_are_refused():
    tissue = np.ones((2, 40, 40, 40))
    with pytest.raises(InputError, match="T1Gd"):
        shape_features((_balls(5, 11) > 0)[None].astype(np.uint8), tissue, 3.0)
    with pytest.raises(InputError, match="grid"):
        shape_features(_balls(5, 11)[None], tissue[:, :30], 3.0)


def test_fit_learns_a_known_function():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    mu = np.exp(np.column_stack([0.5 * x[:, 0] + 2.0, 0.3 * x[:, 1] * x[:, 2] + 1.0]))
    _, summary = fit(dict(DEFAULT_SETTINGS, steps=1500), x[:500], mu[:500], x[500:], mu[500:], log=lambda *_: None)
    assert summary["loss_curve"][-1]["train_mse_log"] < 0.2 * summary["loss_curve"][0]["train_mse_log"]
    assert summary["val_median_abs_log_error"]["mu1"] < 0.05


def test_a_case_regrown_on_the_atlas_grid_matches_the_3mm_simulation_and_the_pipeline_masks(tmp_path):
    """The same parameters grown at 1.5 mm and at 3 mm give nearly the same lesion on the network grid (the two
    solvers share nothing but the tissue maps' source), and its labels are the pipeline's masks of the 1.5 mm
    truth."""
    from TumorPersonalizationLib.lmi.atlas_growth import atlas_grids, grow_on_atlas, labels_path, load_labels
    from TumorPersonalizationLib.lmi.config import load_config, network_domain
    from TumorPersonalizationLib.lmi.parameters import from_time_independent
    from TumorPersonalizationLib.lmi.pipeline import lesion_on_grid

    config = load_config()
    grids = atlas_grids(config)
    dw, rho, days = (float(v) for v in from_time_independent(12.0, 3.0))
    parameters = np.array([dw, rho, days, 40.0, 30.0, 40.0, 0.7, 0.25])
    truth, t1gd, flair, labels = grow_on_atlas(grids, parameters)
    assert truth.shape == grids.fine.geometry.shape and labels.shape == tuple(config["grid"]["shape"])
    assert np.array_equal(t1gd, truth >= 0.7) and np.array_equal(flair, truth >= 0.25)
    wm = grids.atlas.wm
    on_net = lesion_on_grid(wm.like(t1gd.astype(np.uint8)), wm.like(flair.astype(np.uint8)),
                                    grids.net.geometry)
    assert np.array_equal(labels == 2, on_net[0]) and np.array_equal(labels > 0, on_net[1])
    coarse = network_domain(config).simulate(dw, rho, days, parameters[3:6])
    for level, label in ((0.7, 2), (0.25, 1)):
        assert np.count_nonzero(labels >= label) == pytest.approx(np.count_nonzero(coarse >= level), rel=0.25)

    with pytest.raises(InputError, match="lmi_grow_atlas"):
        load_labels(tmp_path, "train", 0, 1)
    np.savez(labels_path(tmp_path, "train", 0), labels=labels[None])
    assert load_labels(tmp_path, "train", 0, 1).shape == (1, *labels.shape)
    with pytest.raises(InputError, match="1 cases, the shard holds 2"):
        load_labels(tmp_path, "train", 0, 2)


def test_random_warps_have_the_asked_amplitude_and_keep_labels_and_their_volume():
    from TumorPersonalizationLib.lmi.label_warp import displacement_bank, random_displacement, warp_labels, \
        warp_randomly

    rng = np.random.default_rng(0)
    field = random_displacement((40, 40, 40), 2.0, 9.0, 3.0, rng)
    assert field.shape == (3, 40, 40, 40)
    assert np.allclose(field.std(axis=(1, 2, 3)) * 3.0, 2.0, rtol=1e-4)  # RMS per component, in mm
    # Smooth: neighbouring voxels move alike. Noise smoothed by a Gaussian of s = 3 voxels changes between
    # neighbours by about 1 / (s sqrt 2) = 0.24 of its size (white noise: by ~1.1 of it).
    assert np.abs(np.diff(field, axis=1)).mean() < 0.35 * np.abs(field).mean()
    labels = _balls(6, 10)
    assert np.array_equal(warp_labels(labels, np.zeros_like(field)), labels)  # no displacement: no change
    # A uniform shift by 2 voxels moves the ball by 2 voxels (pull: out[x] = in[x + d]).
    shift = np.zeros_like(field)
    shift[0] = 2.0
    assert np.array_equal(warp_labels(labels, shift)[:-2], labels[2:])
    warped = warp_labels(labels, field)
    assert set(np.unique(warped)) == {0, 1, 2} and warped.dtype == labels.dtype
    # out[x] = in[x + d(x)]: each region moves by at most the largest displacement (rounded) and no further.
    from scipy import ndimage

    reach = int(np.ceil(np.linalg.norm(field, axis=0).max())) + 1
    for value in (1, 2):
        region = labels >= value
        assert not np.any((warped >= value) & ~ndimage.binary_dilation(region, iterations=reach))
        assert np.all((warped >= value)[ndimage.binary_erosion(region, iterations=reach)])
    assert not np.array_equal(warped, labels)
    bank = displacement_bank((40, 40, 40), 2, 9.0, 3.0, seed=1)
    assert np.array_equal(bank, displacement_bank((40, 40, 40), 2, 9.0, 3.0, seed=1))  # deterministic
    still = warp_randomly(labels, bank, (0.0, 0.0), np.random.default_rng(0))
    assert np.array_equal(still, labels)
    with pytest.raises(InputError, match="amplitude"):
        random_displacement((4, 4, 4), -1.0, 9.0, 3.0, rng)
    with pytest.raises(InputError, match="does not fit"):
        warp_labels(labels, field[:, :10])
