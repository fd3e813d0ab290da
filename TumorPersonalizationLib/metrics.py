"""Metrics that judge densities and plans: volumes, overlap, surface distances, coverage, per-tissue errors.

Masks are boolean Volumes (or arrays with a spacing); distances are in mm and account for anisotropic voxels.
All functions check that their inputs share one grid.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import InputError
from .imaging.volume import Volume, require_same_grid
from .validation import binary


def _mask(volume: Volume, name: str) -> np.ndarray:
    return binary(volume.array, name)


def volume_ml(mask: Volume) -> float:
    """Volume of a mask in millilitres."""
    return float(np.count_nonzero(_mask(mask, "mask")) * mask.geometry.voxel_volume_ml)


def dice(a: Volume, b: Volume) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|); 1.0 when both are empty."""
    require_same_grid(a, "first mask", b, "second mask")
    x, y = _mask(a, "first mask"), _mask(b, "second mask")
    total = np.count_nonzero(x) + np.count_nonzero(y)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(x & y) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    # Voxels of the mask with a face-neighbour outside it (the array edge counts as outside).
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def surface_distances_mm(a: Volume, b: Volume) -> dict:
    """Symmetric surface distances between two non-empty masks (voxel centres of boundary voxels), in mm.

    Returns
    -------
    dict
        ``hausdorff95_mm``: the larger of the two directed 95th percentiles; ``hausdorff_mm``: the maximum;
        ``mean_surface_distance_mm``: the mean over both directions' distances.
    """
    require_same_grid(a, "first mask", b, "second mask")
    x, y = _mask(a, "first mask"), _mask(b, "second mask")
    if not x.any() or not y.any():
        raise InputError("surface distances need two non-empty masks")
    d_ab, d_ba = _surface_distances(x, y, a.geometry.spacing_mm)
    return {
        "hausdorff95_mm": float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
        "hausdorff_mm": float(max(d_ab.max(), d_ba.max())),
        "mean_surface_distance_mm": float(np.concatenate([d_ab, d_ba]).mean()),
    }


def coverage(recurrence: Volume, plan: Volume) -> dict:
    """How much of a follow-up recurrence a plan covers.

    Returns
    -------
    dict
        ``coverage``: |recurrence ∩ plan| / |recurrence| in [0, 1]; ``missed_ml``: recurrence volume outside the
        plan; ``recurrence_ml``.
    """
    require_same_grid(plan, "plan", recurrence, "recurrence")
    rec, pl = _mask(recurrence, "recurrence"), _mask(plan, "plan")
    n = np.count_nonzero(rec)
    if n == 0:
        raise InputError("recurrence: the mask is empty")
    ml = recurrence.geometry.voxel_volume_ml
    return {
        "coverage": float(np.count_nonzero(rec & pl) / n),
        "missed_ml": float(np.count_nonzero(rec & ~pl) * ml),
        "recurrence_ml": float(n * ml),
    }


def tissue_labels(wm: Volume, gm: Volume, csf: Volume) -> np.ndarray:
    """Hard tissue labels from probabilities: 1 WM, 2 GM, 3 CSF where that tissue is the most probable, else 0.

    Background (1 - WM - GM - CSF) competes too, so voxels outside the head get 0.
    """
    require_same_grid(wm, "wm", gm, "gm")
    require_same_grid(wm, "wm", csf, "csf")
    stack = np.stack([1.0 - wm.array - gm.array - csf.array, wm.array, gm.array, csf.array])
    return np.argmax(stack, axis=0).astype(np.uint8)


def mae_by_tissue(predicted: Volume, truth: Volume, wm: Volume, gm: Volume, csf: Volume) -> dict:
    """Mean absolute density error within WM, GM and CSF (hard labels of :func:`tissue_labels`)."""
    require_same_grid(truth, "true density", predicted, "predicted density")
    labels = tissue_labels(wm, gm, csf)
    require_same_grid(truth, "true density", wm, "wm")
    error = np.abs(predicted.array.astype(np.float64) - truth.array.astype(np.float64))
    return {name: float(error[labels == code].mean()) if np.any(labels == code) else float("nan")
            for name, code in (("wm", 1), ("gm", 2), ("csf", 3))}


def dice_at_levels(predicted: Volume, truth: Volume, levels=(0.25, 0.6)) -> dict:
    """Dice of {predicted >= level} against {truth >= level} for each level (keys are the levels as strings)."""
    require_same_grid(truth, "true density", predicted, "predicted density")
    return {f"{level:g}": dice(predicted.like(predicted.array >= level), truth.like(truth.array >= level))
            for level in levels}
