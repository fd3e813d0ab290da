"""Does a personalized density explain the segmentations it was fitted to? The same check for every method.

A density explains a T1Gd / FLAIR pair when some visibility level of it reproduces each mask: the check takes, for
each mask, the best Dice of {c >= u} over the levels the thesis allows for that mask (T1Gd 0.5-0.85, FLAIR 0.05-0.6)
and the distance between the lesion's centre and the centre of the density's FLAIR-level region; and whether the
growth parameters lie inside the prior range the methods share. A result that fails
is still written, but flagged: ``report["quality"]["status"] == "poor fit"``, a warning on stderr and its own exit
code on the command line (:data:`POOR_FIT_EXIT_CODE`), a warning in the Slicer panel.
"""
from __future__ import annotations

import numpy as np

POOR_FIT_EXIT_CODE = 3
"""Exit code of ``personalize`` when the result was written but does not explain the segmentations."""

T1GD_LEVELS = np.round(np.arange(0.50, 0.851, 0.05), 3)
FLAIR_LEVELS = np.round(np.arange(0.05, 0.601, 0.05), 3)
MIN_FLAIR_DICE = 0.5
"""Below this best FLAIR Dice the density's visible part does not match the lesion (good fits score 0.8-0.98)."""
MIN_T1GD_DICE = 0.3
"""Below this best T1Gd Dice the density's core does not match the enhancing lesion (small cores score lower)."""
MAX_CENTRE_DISTANCE_MM = 15.0
"""Beyond this the density sits elsewhere than the lesion, whatever the overlap."""


def best_dice(density: np.ndarray, mask: np.ndarray, levels) -> tuple[float, float]:
    """(Dice, level): the best overlap of {density >= level} with ``mask`` over ``levels``."""
    size = np.count_nonzero(mask)
    best = (0.0, float(levels[0]))
    for level in levels:
        region = density >= level
        total = size + np.count_nonzero(region)
        dice = 2.0 * np.count_nonzero(region & mask) / total if total else 1.0
        if dice > best[0]:
            best = (float(dice), float(level))
    return best


PRIOR_TOLERANCE = 0.02
"""Relative slack before a growth parameter counts as outside the prior range (rounding, refinement steps)."""


def _value(entry):
    if isinstance(entry, dict):
        return entry.get("value", entry.get("map"))
    return entry


def parameter_warnings(parameters: dict) -> list:
    """Warnings for growth parameters outside the prior range every method shares.

    ``parameters`` as in a report: ``{"Dw": {"value": ...} or {"map": ...}, ...}`` (or plain numbers). Dw, rho and T
    outside the calibration prior (:data:`~TumorPersonalizationLib.inference.likelihood.PATHOLOGY_RANGES`,
    ``T_LIMITS_DAYS``) by more than :data:`PRIOR_TOLERANCE` mean the method extrapolated beyond what any model of
    this project was built for (a learned method fed a lesion unlike its training data, a T1Gd given as FLAIR).
    """
    from ..inference.likelihood import PATHOLOGY_RANGES, T_LIMITS_DAYS

    ranges = {"Dw": (PATHOLOGY_RANGES["Dw"], "mm^2/day"), "rho": (PATHOLOGY_RANGES["rho"], "1/day"),
              "T": (T_LIMITS_DAYS, "days")}
    warnings = []
    for name, ((low, high), unit) in ranges.items():
        value = _value(parameters.get(name))
        if value is None:
            continue
        value = float(value)
        if not np.isfinite(value) or value < low * (1 - PRIOR_TOLERANCE) or value > high * (1 + PRIOR_TOLERANCE):
            warnings.append(f"{name} = {value:.3g} {unit} lies outside the prior range [{low:g}, {high:g}] {unit}: "
                            "the segmentations are unlike the tumors the model was fitted to")
    return warnings


def assess(density, t1gd, flair, parameters: dict | None = None) -> dict:
    """The fit checks of ``density`` (a Volume in [0, 1]) against the boolean ``t1gd`` and ``flair`` Volumes on its
    grid, and of the growth ``parameters`` (:func:`parameter_warnings`): {"status": "ok" | "poor fit",
    "warnings": [...], "flair_dice", "flair_level", "t1gd_dice", "t1gd_level", "centre_distance_mm"}."""
    c = density.array
    flair_dice, flair_level = best_dice(c, flair.array, FLAIR_LEVELS)
    t1gd_dice, t1gd_level = best_dice(c, t1gd.array, T1GD_LEVELS)
    geometry = density.geometry
    lesion_centre = geometry.index_to_ras(np.argwhere(flair.array).mean(axis=0))
    visible = np.argwhere(c >= flair_level)
    distance = (float(np.linalg.norm(geometry.index_to_ras(visible.mean(axis=0)) - lesion_centre))
                if len(visible) else float("inf"))
    warnings = []
    if flair_dice < MIN_FLAIR_DICE:
        warnings.append(f"the density matches the FLAIR lesion poorly (best Dice {flair_dice:.2f} at c >= "
                        f"{flair_level:g}; good fits score above {MIN_FLAIR_DICE:g})")
    if t1gd_dice < MIN_T1GD_DICE:
        warnings.append(f"the density matches the T1Gd lesion poorly (best Dice {t1gd_dice:.2f} at c >= "
                        f"{t1gd_level:g})")
    if distance > MAX_CENTRE_DISTANCE_MM:
        warnings.append(f"the density's visible part is centred {distance:.0f} mm from the lesion's centre")
    warnings += parameter_warnings(parameters or {})
    return {"status": "poor fit" if warnings else "ok", "warnings": warnings,
            "flair_dice": flair_dice, "flair_level": flair_level, "t1gd_dice": t1gd_dice, "t1gd_level": t1gd_level,
            "centre_distance_mm": distance}
