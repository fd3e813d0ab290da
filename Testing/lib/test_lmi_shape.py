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
