"""Radiotherapy clinical target volumes (CTVs) from a tumor core and a tumor cell density.

- :func:`standard_plan`: today's clinical CTV, the tumor core grown by a uniform Euclidean margin (15 mm), clipped
  to the brain and optionally kept out of CSF.
- :func:`threshold_plan`: the voxels where the modelled density reaches ``threshold``.
- :func:`iso_volume_plan`: the highest-density voxels with the same volume as the standard plan; this is how the
  PREDICT-GBM benchmark compares a growth model with the standard plan at equal irradiated volume.
- :func:`probability_map` / :func:`probabilistic_plan`: from a stack of density samples (e.g. posterior draws),
  P(c >= threshold) per voxel and the voxels where it reaches ``min_probability``.

All plans are boolean Volumes on the density's grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import metrics
from .errors import InputError
from .imaging.volume import Volume, require_same_grid
from .plan_defaults import (CSF_THRESHOLD, DEFAULT_CORE_LABELS, DEFAULT_MARGIN_MM,  # noqa: F401 (re-exported)
                            DEFAULT_MIN_PROBABILITY, DEFAULT_THRESHOLD)
from .validation import unit_interval


def check_density(density: Volume, name: str = "density") -> np.ndarray:
    """The density as float32 after checking it is finite and within [0, 1]."""
    return unit_interval(density.array, name, "densities", tolerance=1e-6)


def core_mask(segmentation: Volume, labels=DEFAULT_CORE_LABELS, name: str = "core") -> Volume:
    """The tumor core as a boolean Volume from a binary mask or a label map.

    A segmentation whose values are only 0 and 1 is taken as a binary mask; otherwise the voxels carrying one of
    ``labels`` form the core.
    """
    array = segmentation.array
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name}: expected a mask or label map, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    values = np.unique(array)
    if np.all(np.isin(values, (0, 1))):
        core = array.astype(bool)
    else:
        if not np.all(values == np.round(values)):
            raise InputError(f"{name}: neither a binary mask nor a label map (non-integer values)")
        core = np.isin(array, labels)
    if not core.any():
        found = ", ".join(f"{v:g}" for v in values[:8])
        raise InputError(f"{name}: the tumor core is empty (labels {list(labels)} not found; values present: "
                         f"{found})")
    return segmentation.like(core)


def _csf_probability(csf: Volume) -> np.ndarray:
    # A 0-255 or 0-100 map, or NaN (which compares as not below the threshold), would silently cut every voxel
    # with any CSF out of both plans.
    return unit_interval(csf.array, "csf", "CSF probabilities")


def _optional_mask(volume: Volume | None, reference: Volume, name: str) -> np.ndarray | None:
    if volume is None:
        return None
    require_same_grid(reference, "the density/core", volume, name)
    array = volume.array
    if array.dtype != bool:
        if not np.all(np.isfinite(array)):
            raise InputError(f"{name}: contains NaN or infinite values")
        array = array >= 0.5
    if not array.any():
        raise InputError(f"{name}: the mask is empty")
    return array


def standard_plan(core: Volume, margin_mm: float = DEFAULT_MARGIN_MM, brain_mask: Volume | None = None,
                  csf: Volume | None = None, exclude_csf: bool = False) -> Volume:
    """Core grown by a Euclidean margin (physical mm, anisotropic voxels handled), clipped to the brain.

    Parameters
    ----------
    core : Volume (bool)
        Tumor core, e.g. from :func:`core_mask`.
    margin_mm : float
        Margin in mm (>= 0). A voxel is in the plan when its centre lies within ``margin_mm`` of a core voxel centre.
    brain_mask : Volume, optional
        Brain mask (values >= 0.5 count); the plan is clipped to it.
    csf : Volume, optional
        CSF probability map; with ``exclude_csf`` voxels with CSF >= 0.5 leave the plan (the core itself stays).
    """
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise InputError(f"margin must be a non-negative number of mm, got {margin_mm}")
    core_array = core.array.astype(bool)
    if not core_array.any():
        raise InputError("core: the tumor core is empty")
    distance = ndimage.distance_transform_edt(~core_array, sampling=core.geometry.spacing_mm)
    plan = distance <= margin_mm + 1e-6
    brain = _optional_mask(brain_mask, core, "brain mask")
    if brain is not None:
        plan &= brain | core_array
    if exclude_csf:
        if csf is None:
            raise InputError("exclude_csf needs a CSF map")
        require_same_grid(core, "core", csf, "csf")
        plan &= (_csf_probability(csf) < CSF_THRESHOLD) | core_array
    return core.like(plan)


def threshold_plan(density: Volume, threshold: float = DEFAULT_THRESHOLD, brain_mask: Volume | None = None
                   ) -> Volume:
    """Voxels where the density is at least ``threshold`` (within the brain mask if given)."""
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold must lie in (0, 1], got {threshold}")
    plan = check_density(density) >= threshold
    brain = _optional_mask(brain_mask, density, "brain mask")
    if brain is not None:
        plan &= brain
    return density.like(plan)


def iso_volume_plan(density: Volume, n_voxels: int, brain_mask: Volume | None = None,
                    always: Volume | None = None) -> Volume:
    """The ``n_voxels`` voxels of highest density (within the brain mask if given), never a voxel of density 0.

    Ties are broken deterministically by voxel order (C order of ``[i, j, k]``), so the plan has exactly
    ``n_voxels`` voxels, the same volume as the plan it is compared with. Voxels of ``always`` (e.g. the visible
    core, which is treated whatever a model says) are in the plan first and count towards ``n_voxels``. Where the
    density is non-zero in fewer voxels, the plan stops at the density's support and is smaller (a model gives no
    reason to irradiate where it puts no tumor cells; :func:`make_plans` reports it).
    """
    values = check_density(density).ravel()
    if n_voxels <= 0:
        raise InputError(f"iso-volume plan: asked for {n_voxels} voxels; the standard plan is empty")
    brain = _optional_mask(brain_mask, density, "brain mask")
    plan = np.zeros(values.size, dtype=bool)
    if always is not None:
        require_same_grid(density, "density", always, "core")
        plan |= always.array.astype(bool).ravel()
    allowed = brain.ravel() if brain is not None else np.ones(values.size, dtype=bool)
    candidates = np.flatnonzero(allowed & ~plan & (values > 0))
    remaining = min(n_voxels - int(plan.sum()), candidates.size)
    if remaining > 0:
        # Stable sort on -density: equal densities keep their voxel order.
        order = np.argsort(-values[candidates], kind="stable")
        plan[candidates[order[:remaining]]] = True
    return density.like(plan.reshape(density.shape))


def probability_map(samples: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Voxel-wise share of samples with density >= threshold.

    Parameters
    ----------
    samples : np.ndarray, shape (S, ni, nj, nk)
        Density samples in [0, 1] (e.g. posterior-predictive draws), equally weighted.

    Returns
    -------
    np.ndarray, float32, shape (ni, nj, nk)
    """
    samples = np.asarray(samples)
    if samples.ndim != 4 or samples.shape[0] == 0:
        raise InputError(f"density samples must have shape (S, ni, nj, nk) with S >= 1, got {samples.shape}")
    if not np.all(np.isfinite(samples)) or samples.min() < 0 or samples.max() > 1 + 1e-6:
        raise InputError("density samples must be finite and lie in [0, 1]")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold must lie in (0, 1], got {threshold}")
    return np.mean(samples >= threshold, axis=0, dtype=np.float64).astype(np.float32)


def probabilistic_plan(samples: np.ndarray, reference: Volume, threshold: float = DEFAULT_THRESHOLD,
                       min_probability: float = DEFAULT_MIN_PROBABILITY) -> tuple[Volume, Volume]:
    """Plan of voxels with P(c >= threshold) >= min_probability, and the probability map, on ``reference``'s grid."""
    if not 0.0 < min_probability <= 1.0:
        raise InputError(f"min_probability must lie in (0, 1], got {min_probability}")
    probability = probability_map(samples, threshold)
    if probability.shape != reference.shape:
        raise InputError(f"density samples have grid shape {probability.shape}, the reference {reference.shape}")
    return reference.like(probability >= min_probability), reference.like(probability)


@dataclass(frozen=True)
class Plans:
    """The standard and the personalized plan, and a JSON-ready summary of both."""

    standard: Volume
    model: Volume
    report: dict


def make_plans(density: Volume, core: Volume, *, margin_mm: float = DEFAULT_MARGIN_MM,
               brain_mask: Volume | None = None, csf: Volume | None = None, threshold: float | None = None,
               recurrence: Volume | None = None) -> Plans:
    """Standard plan and personalized plan (iso-volume, or threshold when ``threshold`` is given), with metrics.

    With ``csf`` both plans leave out voxels with CSF >= 0.5; with ``brain_mask`` both are clipped to the brain.
    The iso-volume plan always contains the core. The report holds volumes (mL), the model plan's kind and
    threshold (for iso-volume: the lowest density it includes outside the core), Dice between the plans, the
    share of the core inside the model plan and, with ``recurrence``, each
    plan's coverage and missed volume.
    """
    check_density(density)
    require_same_grid(density, "density", core, "core")
    standard = standard_plan(core, margin_mm, brain_mask, csf, exclude_csf=csf is not None)
    limit = brain_mask
    if csf is not None:
        require_same_grid(density, "density", csf, "csf")
        allowed = _csf_probability(csf) < CSF_THRESHOLD
        if brain_mask is not None:
            allowed &= _optional_mask(brain_mask, density, "brain mask")
        limit = csf.like(allowed)
    if threshold is not None:
        model = threshold_plan(density, threshold, limit)
        kind, effective_threshold = "threshold", float(threshold)
    else:
        model = iso_volume_plan(density, int(np.count_nonzero(standard.array)), limit, always=core)
        outside_core = model.array & ~core.array.astype(bool)
        kind = "iso-volume"
        short = np.count_nonzero(standard.array) - np.count_nonzero(model.array)
        effective_threshold = float(density.array[outside_core].min()) if outside_core.any() else 1.0
    core_voxels = np.count_nonzero(core.array)
    report = {
        "core_ml": metrics.volume_ml(core),
        "standard": {"margin_mm": float(margin_mm), "volume_ml": metrics.volume_ml(standard),
                     "clipped_to_brain": brain_mask is not None, "csf_excluded": csf is not None},
        "model": {"kind": kind, "threshold": effective_threshold, "volume_ml": metrics.volume_ml(model)},
        "dice_standard_vs_model": metrics.dice(standard, model),
        "core_inside_model_plan": float(np.count_nonzero(core.array & model.array) / core_voxels),
    }
    if threshold is None and short > 0:
        report["model"]["note"] = (f"the density is non-zero in too few voxels to fill the standard plan's volume: the "
                                   f"model plan stops at its support, {short * density.geometry.voxel_volume_ml:.1f} "
                                   f"mL smaller")
    if recurrence is not None:
        report["recurrence"] = {"standard": metrics.coverage(recurrence, standard),
                                "model": metrics.coverage(recurrence, model)}
    return Plans(standard, model, report)
