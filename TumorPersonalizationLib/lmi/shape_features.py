"""Hand-made descriptors of a lesion's shape in the atlas, from which :mod:`.shape_regressor` predicts mu1 and mu2.

Why: the inverse ResNet, trained on 2 CPU cores, reads mu1 and mu2 no better than a least-squares fit on the two
masks' volumes and tissue fractions (docs/methods/lmi.md), while a simulation-based fit to the same 3 mm masks gets them
twice as well: the masks' shape holds the information, the small network does not extract it. These numbers extract
part of it directly. How diffuse a tumor is (mu1 / mu2 = sqrt(Dw / rho)) shows in how its outline follows the anatomy:
a steep front creeps along white-matter tracts and is wrinkled and elongated, a diffuse one smooths over them and is
rounder; and in how thick the FLAIR rim around the enhancing core is, and where. On 4,000 training cases a quadratic
least-squares fit on these numbers took the validation set's median |log error| of mu1 from 0.208 (the six volume and
tissue numbers alone) to 0.130; sphericity gave most of it, the rim distances and elongation the rest
(docs/methods/lmi.md).

Every feature of one case, in the order of :data:`FEATURE_NAMES` (distances in mm, volumes in mL; "lesion" is the
FLAIR mask, which contains the T1Gd "core"; the boundary is the lesion's voxels with a face-neighbour outside it):

- ``core_log_ml``, ``core_wm``, ``core_gm``, ``lesion_log_ml``, ``lesion_wm``, ``lesion_gm``: log volume
  (log(mL + one 3 mm voxel)) and mean WM and GM probability of the core and of the lesion;
- ``rim_mean_mm`` ... ``rim_p90_mm``: distance from the boundary voxels to the nearest core voxel: mean, median,
  standard deviation, 10th and 90th percentile; ``rim_wm_mm`` / ``rim_gm_mm``: its mean over the boundary voxels
  with WM > GM / the others; ``boundary_wm_fraction``: the share of boundary voxels with WM > GM;
- ``core_sphericity``, ``lesion_sphericity``: (36 pi V^2)^(1/3) / surface (1 for a ball; voxel faces counted);
- ``core_elongation_1``, ``core_elongation_2`` and the lesion's: half the log ratio of the largest and the middle
  eigenvalue of the mask's voxel-coordinate covariance to the smallest;
- ``boundary_outside_domain``: voxels outside the solver domain (WM + GM < 0.1) next to the boundary, per boundary
  voxel (a lesion pressed against the ventricles or the skull);
- ``core_to_lesion_centre_mm``: distance between the core's and the lesion's centroids;
- ``rim_wm``, ``rim_gm``: mean WM, GM in the lesion outside the core; ``shell_wm``, ``shell_gm``: in the one-voxel
  shell just outside the lesion.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..imaging.volume import bounding_box

FEATURE_NAMES = (
    "core_log_ml", "core_wm", "core_gm", "lesion_log_ml", "lesion_wm", "lesion_gm",
    "rim_mean_mm", "rim_median_mm", "rim_std_mm", "rim_p10_mm", "rim_p90_mm", "rim_wm_mm", "rim_gm_mm",
    "boundary_wm_fraction", "core_sphericity", "lesion_sphericity",
    "core_elongation_1", "core_elongation_2", "lesion_elongation_1", "lesion_elongation_2",
    "boundary_outside_domain", "core_to_lesion_centre_mm", "rim_wm", "rim_gm", "shell_wm", "shell_gm",
)
ML_FLOOR = 0.027
"""Added to volumes before the log (one 3 mm voxel), so a one-voxel lesion stays finite."""
DOMAIN_MIN_WM_PLUS_GM = 0.1
"""The solver's domain threshold (models.fisher_kolmogorov)."""


def _faces(mask: np.ndarray) -> int:
    """Voxel faces between the mask and its complement (the array edge counts as outside)."""
    padded = np.pad(mask, 1).astype(np.int8)
    return int(sum(np.count_nonzero(np.diff(padded, axis=axis)) for axis in range(3)))


def _sphericity(mask: np.ndarray) -> float:
    n = np.count_nonzero(mask)
    return float((36.0 * np.pi * n ** 2) ** (1.0 / 3.0) / max(_faces(mask), 1))


def _elongation(mask: np.ndarray) -> list:
    points = np.argwhere(mask).astype(np.float64)
    if len(points) < 4:
        return [0.0, 0.0]
    smallest, middle, largest = np.maximum(np.linalg.eigvalsh(np.cov(points.T)), 1e-3)
    return [0.5 * np.log(largest / smallest), 0.5 * np.log(middle / smallest)]


def _mean(values: np.ndarray, where: np.ndarray, empty: float = 0.0) -> float:
    return float(values[where].mean()) if where.any() else empty


def case_features(labels: np.ndarray, wm: np.ndarray, gm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of one case.

    Parameters
    ----------
    labels : (ni, nj, nk) uint8
        0 outside, 1 FLAIR only, 2 T1Gd (:func:`.labels.encode_labels`), on a grid of isotropic ``spacing_mm``.
    wm, gm : (ni, nj, nk) float
        Atlas tissue probabilities on the same grid.
    spacing_mm : float
        Voxel size in mm.

    Returns
    -------
    (len(FEATURE_NAMES),) float64
    """
    if not (labels == 2).any():
        raise InputError("the T1Gd mask is empty on the network grid: no shape to describe")
    # Every feature lives within one voxel of the lesion: on its box grown by two voxels the values are the same
    # as on the whole grid, ~30x cheaper on the atlas' 1.5 mm grid.
    box = bounding_box(labels >= 1, 2)
    labels, wm, gm = labels[box], wm[box], gm[box]
    core, lesion = labels == 2, labels >= 1
    voxel_ml = spacing_mm ** 3 / 1000.0
    features = []
    for mask in (core, lesion):
        features += [np.log(np.count_nonzero(mask) * voxel_ml + ML_FLOOR), wm[mask].mean(), gm[mask].mean()]
    boundary = lesion & ~ndimage.binary_erosion(lesion, border_value=0)
    rim = ndimage.distance_transform_edt(~core)[boundary] * spacing_mm
    in_wm = wm[boundary] > gm[boundary]
    features += [rim.mean(), np.median(rim), rim.std(), np.percentile(rim, 10), np.percentile(rim, 90),
                 _mean(rim, in_wm, rim.mean()), _mean(rim, ~in_wm, rim.mean()), in_wm.mean()]
    features += [_sphericity(core), _sphericity(lesion), *_elongation(core), *_elongation(lesion)]
    outside_domain = ndimage.binary_dilation(boundary) & ((wm + gm) < DOMAIN_MIN_WM_PLUS_GM)
    features.append(np.count_nonzero(outside_domain) / np.count_nonzero(boundary))
    centre_offset = np.argwhere(lesion).mean(axis=0) - np.argwhere(core).mean(axis=0)
    features.append(np.linalg.norm(centre_offset) * spacing_mm)
    only_flair = lesion & ~core
    shell = ndimage.binary_dilation(lesion) & ~lesion
    features += [_mean(wm, only_flair), _mean(gm, only_flair), _mean(wm, shell), _mean(gm, shell)]
    return np.asarray(features, dtype=np.float64)


def shape_features(labels: np.ndarray, tissue_wm_gm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """:func:`case_features` of many cases: (n, ni, nj, nk) uint8 labels, (2, ni, nj, nk) WM/GM -> (n, F) float64."""
    labels = np.asarray(labels)
    if labels.ndim != 4 or labels.shape[1:] != tissue_wm_gm.shape[1:]:
        raise InputError(f"shape features: labels {labels.shape} do not match the tissue grid "
                         f"{tissue_wm_gm.shape[1:]}")
    wm, gm = (np.asarray(t, dtype=np.float64) for t in tissue_wm_gm)
    return np.stack([case_features(case, wm, gm, float(spacing_mm)) for case in labels])
