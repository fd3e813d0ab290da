"""Shape features against analytic shapes, and the shape regressor's fit."""
import numpy as np
import pytest

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.lmi.shape_features import FEATURE_NAMES, shape_features
from TumorPersonalizationLib.lmi.shape_regressor import DEFAULT_SETTINGS
from TumorPersonalizationLib.lmi.training.train_regressors import fit


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
    assert summary["loss_curves"][0][-1]["train_loss"] < 0.2 * summary["loss_curves"][0][0]["train_loss"]
    assert summary["val_median_abs_log_error"]["mu1"] < 0.05


def test_members_are_trained_apart_and_averaged(tmp_path):
    """Three members from three seeds differ; the ensemble's output is their mean, so its absolute error, case by
    case, is at most the members' mean absolute error (triangle inequality), and the weights file loads back into
    an ensemble of three that predicts the same (and a file of one bare regressor, written before ensembles, as one
    member)."""
    import torch

    from TumorPersonalizationLib.lmi.shape_regressor import MemberMean, load_shape_regressor, predict_mu

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4))
    mu = np.exp(np.column_stack([0.5 * x[:, 0] + 2.0, np.sin(2.0 * x[:, 1]) + 1.0]) + rng.normal(0, 0.1, (400, 2)))
    settings = dict(DEFAULT_SETTINGS, steps=300, members=3)
    model, summary = fit(settings, x[:300], mu[:300], x[300:], mu[300:], log=lambda *_: None)
    assert isinstance(model, MemberMean) and len(model.members) == 3 and summary["members"] == 3
    members = [np.log(predict_mu(m, x[300:])) for m in model.members]
    assert not np.allclose(members[0], members[1], atol=1e-3)
    mean = np.log(predict_mu(model, x[300:]))
    assert np.allclose(mean, np.mean(members, axis=0), atol=1e-5)
    truth = np.log(mu[300:])
    assert np.all(np.abs(mean - truth) <= np.mean([np.abs(m - truth) for m in members], axis=0) + 1e-6)
    assert len(summary["val_median_abs_log_error_of_each_member"]) == 3
    config = {"shape_regressor": settings}
    torch.save({"state_dict": model.state_dict(), "config": config, "feature_names": list(FEATURE_NAMES[:4])},
               tmp_path / "ensemble.pt")
    loaded, _ = load_shape_regressor(tmp_path / "ensemble.pt")
    assert len(loaded.members) == 3 and np.allclose(np.log(predict_mu(loaded, x[300:])), mean, atol=1e-6)
    torch.save({"state_dict": model.state_dict(), "config": {"shape_regressor": dict(settings, members=2)},
                "feature_names": list(FEATURE_NAMES[:4])}, tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_shape_regressor(tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="members"):
        fit(dict(settings, members=0), x[:300], mu[:300], x[300:], mu[300:], log=lambda *_: None)
    # A file written before ensembles: one bare regressor's state, no "members" in its config section.
    single = {key: value for key, value in settings.items() if key != "members"}
    torch.save({"state_dict": model.members[1].state_dict(), "config": {"shape_regressor": single},
                "feature_names": list(FEATURE_NAMES[:4])}, tmp_path / "single.pt")
    loaded, _ = load_shape_regressor(tmp_path / "single.pt")
    assert len(loaded.members) == 1 and np.allclose(np.log(predict_mu(loaded, x[300:])), members[1], atol=1e-6)


def test_a_case_regrown_on_the_atlas_grid_matches_the_3mm_simulation_and_the_pipeline_masks(tmp_path):
    """The same parameters grown at 1.5 mm and at 3 mm give nearly the same lesion on the network grid (the two
    solvers share nothing but the tissue maps' source), and its labels are the pipeline's masks of the 1.5 mm
    truth."""
    from TumorPersonalizationLib.lmi.config import load_config, network_domain
    from TumorPersonalizationLib.lmi.grids import lesion_on_grid
    from TumorPersonalizationLib.lmi.parameters import from_time_independent
    from TumorPersonalizationLib.lmi.training.atlas_growth import atlas_grids, grow_on_atlas, labels_path, load_labels

    config = load_config()
    grids = atlas_grids(config)
    dw, rho, days = (float(v) for v in from_time_independent(12.0, 3.0))
    parameters = np.array([dw, rho, days, 40.0, 30.0, 40.0, 0.7, 0.25])
    truth, network, on_atlas = grow_on_atlas(grids, parameters)
    t1gd, flair, labels = on_atlas == 2, on_atlas > 0, network.labels
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
    loaded = load_labels(tmp_path, "train", 0, 1)
    assert loaded.shape == (1, *labels.shape) and np.array_equal(loaded[0], labels)
    with pytest.raises(InputError, match="1 cases, the shard holds 2"):
        load_labels(tmp_path, "train", 0, 2)


def test_random_warps_have_the_asked_amplitude_and_keep_labels_and_their_volume():
    from TumorPersonalizationLib.lmi.training.label_warp import displacement_bank, random_displacement, warp_labels, \
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


def test_seed_vectors_of_analytic_shapes():
    """Weighted centroids of balls and half-balls: a half-ball's centroid is 3r/8 from the ball's centre."""
    from TumorPersonalizationLib.lmi.seed_features import VECTOR_NAMES, seed_vectors

    n, spacing = 40, 3.0
    labels = _balls(6.0, 11.0, n)
    uniform = np.stack([np.full(labels.shape, 0.7), np.full(labels.shape, 0.3)])
    symmetric = seed_vectors(labels[None], uniform, spacing)[0]
    assert symmetric.shape == (len(VECTOR_NAMES), 3)
    assert np.abs(symmetric).max() < 1e-9  # concentric balls in uniform tissue: nothing points anywhere

    wm = np.zeros(labels.shape)
    wm[(n + 1) // 2:] = 1.0  # white matter in the half i > centre (the centre, 19.5, lies between two planes)
    v = dict(zip(VECTOR_NAMES, seed_vectors(labels[None], np.stack([wm, 1.0 - wm]), spacing)[0]))
    core_radius_mm = 6.0 * spacing
    assert v["core_wm"][0] == pytest.approx(3.0 / 8.0 * core_radius_mm, rel=0.08)
    assert v["core_gm"][0] == pytest.approx(-v["core_wm"][0])
    assert np.allclose(v["core_wm"][1:], 0.0, atol=1e-9) and np.allclose(v["lesion"], 0.0, atol=1e-9)

    shifted = _balls(6.0, 11.0, n)
    shifted[shifted == 2] = 1
    d = np.linalg.norm(np.indices((n,) * 3) - ((n - 1) / 2.0 + np.array([0.0, 2.0, 0.0]))[:, None, None, None],
                       axis=0)
    shifted[d <= 6.0] = 2  # the core moved 2 voxels along j inside the lesion
    v = dict(zip(VECTOR_NAMES, seed_vectors(shifted[None], uniform, spacing)[0]))
    assert v["lesion"] == pytest.approx([0.0, -2.0 * spacing, 0.0], abs=0.15)  # seen from the core's centre

    with pytest.raises(InputError, match="T1Gd"):
        seed_vectors((labels > 0)[None].astype(np.uint8), uniform, spacing)
    with pytest.raises(InputError, match="grid"):
        seed_vectors(labels[None], uniform[:, :30], spacing)


def test_the_seed_estimate_turns_with_the_lesion_and_its_tissue():
    """Mirror a lesion and its tissue along an axis: the shape features stay, the vectors mirror, and so does any
    seed regressor's offset (equivariance by construction, not learnt)."""
    import torch

    from TumorPersonalizationLib.lmi.seed_features import seed_vectors
    from TumorPersonalizationLib.lmi.shape_regressor import SeedRegressor, predict_seed_offset

    rng = np.random.default_rng(1)
    labels = _balls(5.0, 10.0)
    labels[20:30, 14:22, 18:24] = np.maximum(labels[20:30, 14:22, 18:24], 1)  # an asymmetric lobe of FLAIR
    tissue = np.stack([rng.uniform(0.2, 0.8, labels.shape), rng.uniform(0.0, 0.2, labels.shape)])
    torch.manual_seed(0)
    model = SeedRegressor()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    for axis in range(3):
        mirrored, mirrored_tissue = np.flip(labels, axis), np.flip(tissue, axis + 1)
        features = shape_features(np.stack([labels, mirrored]), tissue, 3.0)
        assert np.allclose(features[0], shape_features(mirrored[None], mirrored_tissue, 3.0)[0])
        vectors = np.concatenate([seed_vectors(labels[None], tissue, 3.0),
                                  seed_vectors(mirrored[None], mirrored_tissue, 3.0)])
        offset = predict_seed_offset(model, features[[0, 0]], vectors)
        sign = np.ones(3)
        sign[axis] = -1.0
        assert np.abs(offset[0]).max() > 0.1
        assert np.allclose(offset[1], sign * offset[0], atol=1e-4)


def test_seed_fit_learns_shape_dependent_coefficients():
    """Offsets that mix the vectors with coefficients depending on a feature: the MLP learns what the best
    constant mix (its start) cannot."""
    from TumorPersonalizationLib.lmi.training.train_regressors import fit_seed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 4))
    vectors = rng.normal(size=(900, 5, 3))
    offsets = (1.0 + np.tanh(2.0 * x[:, :1])) * vectors[:, 0] - 0.5 * vectors[:, 2]
    data = (x[:800], vectors[:800], offsets[:800]), (x[800:], vectors[800:], offsets[800:])
    _, summary = fit_seed(dict(DEFAULT_SETTINGS, steps=2000), *data, log=lambda *_: None)
    errors = summary["val_seed_error_mm"]
    assert errors["seed regressor"]["median"] < 0.3 * errors["least-squares constant combination"]["median"]
    assert summary["loss_curves"][0][-1]["train_loss"] < 0.2 * summary["loss_curves"][0][0]["train_loss"]
    with pytest.raises(InputError, match="non-finite"):
        fit_seed(DEFAULT_SETTINGS, (x[:800], vectors[:800], np.full((800, 3), np.nan)), data[1])


def test_features_do_not_depend_on_where_the_lesion_lies_in_the_grid():
    """The features are computed on the lesion's box: the same lesion and tissue embedded anywhere in a larger
    grid, even touching its edge, give the same values."""
    rng = np.random.default_rng(2)
    labels = _balls(4.0, 8.0, 24)
    labels[14:22, 8:14, 10:16] = np.maximum(labels[14:22, 8:14, 10:16], 1)
    tissue = np.stack([rng.uniform(0.0, 0.8, labels.shape), rng.uniform(0.0, 0.2, labels.shape)])
    reference = shape_features(labels[None], tissue, 3.0)[0]
    for corner in ((0, 0, 0), (30, 5, 17)):
        big_labels, big_tissue = np.zeros((60, 50, 45), np.uint8), np.zeros((2, 60, 50, 45))
        where = tuple(slice(c, c + 24) for c in corner)
        big_labels[where], big_tissue[(slice(None), *where)] = labels, tissue
        assert np.allclose(shape_features(big_labels[None], big_tissue, 3.0)[0], reference, rtol=1e-12, atol=1e-12)


def _ball_on(geometry, centre_ras, radius_core_mm, radius_lesion_mm):
    """Labels of two concentric balls (radii in mm) around a RAS point on a grid's voxel centres."""
    ras = geometry.index_to_ras(np.moveaxis(np.indices(geometry.shape), 0, -1).astype(np.float64))
    d = np.linalg.norm(ras - np.asarray(centre_ras), axis=-1)
    return (d <= radius_lesion_mm).astype(np.uint8) + (d <= radius_core_mm).astype(np.uint8)


def test_descriptors_by_name_and_a_seed_placed_from_the_core_centre():
    """One ball-shaped lesion on a 3 mm grid: the regressors read the features and vectors they were trained on by
    name (a subset, in their order; a name this version does not compute is refused), and a seed regressor with a
    zero offset places the seed at the core's centre."""
    import torch

    from TumorPersonalizationLib.imaging.volume import Geometry
    from TumorPersonalizationLib.lmi import lesion_descriptors as ld
    from TumorPersonalizationLib.lmi.estimators import regress
    from TumorPersonalizationLib.lmi.seed_features import VECTOR_NAMES
    from TumorPersonalizationLib.lmi.shape_regressor import SeedRegressor, ShapeRegressor

    geometry = Geometry((24,) * 3, (3.0,) * 3, (0.0, 0.0, 0.0))
    centre = (35.0, 33.0, 37.5)
    labels = _ball_on(geometry, centre, 9.0, 21.0)
    wm = np.full(labels.shape, 0.7)
    lesion = ld.GridLesion(labels, wm, 1.0 - wm, geometry.spacing_mm[0], geometry)
    every = dict(zip(FEATURE_NAMES, ld.features(FEATURE_NAMES, lesion)))
    names = FEATURE_NAMES[5:0:-1]
    assert np.array_equal(ld.features(names, lesion), [every[n] for n in names])
    # Voxel faces of a digitised ball add up to 6 pi r^2 (its projections on the three axes, twice): sphericity
    # 4 pi r^2 / 6 pi r^2 = 2/3 on any fine enough grid.
    assert every["lesion_sphericity"] == pytest.approx(2.0 / 3.0, abs=0.03)
    with pytest.raises(InputError, match="not computed"):
        ld.features(["atlas:core_log_ml"], lesion)
    assert ld.vectors(VECTOR_NAMES[:3], lesion).shape == (3, 3)

    torch.manual_seed(0)
    shape_model = ShapeRegressor(len(FEATURE_NAMES))
    shape_model.feature_names = FEATURE_NAMES
    seed_model = SeedRegressor(len(names), len(VECTOR_NAMES))
    seed_model.feature_names, seed_model.vector_names = names, VECTOR_NAMES
    with torch.no_grad():
        seed_model.coefficients[-1].weight.zero_()
        seed_model.coefficients[-1].bias.zero_()
    estimate = regress(shape_model, seed_model, lesion)
    assert np.all(np.isfinite(estimate[:2])) and np.all(estimate[:2] > 0)
    assert np.allclose(estimate[2:5], lesion.core_centre())
    assert np.allclose(estimate[2:5], geometry.ras_to_index(centre), atol=0.1)  # the digitised core's centroid
    only_seed = regress(None, seed_model, lesion)
    assert np.all(np.isnan(only_seed[:2])) and np.allclose(only_seed[2:5], estimate[2:5])
