"""How close a surrogate density is to the solver's: the thesis' measures (chapter 5, Table I, Figs. 6-8).

- Dice of {c >= level} at the levels 0.2, 0.4 and 0.8 (Table I, Fig. 8; 1.0 when both sets are empty, as
  :func:`TumorPersonalizationLib.metrics.dice`).
- Mean absolute error within WM, GM and CSF (Fig. 7; hard labels of
  :func:`TumorPersonalizationLib.metrics.tissue_labels`, over the whole crop).
- Mean absolute error in the tumor area, where the solver's density exceeds ``tumor_min`` (Fig. 6, Table II: "the
  area where the tumor concentration simulated using the numerical solver is greater than zero").
"""
from __future__ import annotations

import numpy as np

from ..imaging.volume import Volume
from ..metrics import dice_at_levels, mae_by_tissue

DICE_LEVELS = (0.2, 0.4, 0.8)
THESIS = {"dice 0.2": 0.802, "dice 0.4": 0.795, "dice 0.8": 0.794, "mae wm": 0.026, "mae gm": 0.035, "mae csf": 0.007}
"""The thesis' held-out test means (Fig. 7, Fig. 8, Dw / Dg = 10)."""


def case_scores(predicted: np.ndarray, truth: np.ndarray, tissue: np.ndarray, spacing_mm, *,
                tumor_min: float = 1e-4) -> dict:
    """Scores of one case on one grid.

    Parameters
    ----------
    predicted, truth : (ni, nj, nk) float arrays
        Densities in [0, 1].
    tissue : (3, ni, nj, nk) float array
        WM, GM, CSF probabilities on the same grid.
    spacing_mm : 3 float
    tumor_min : float
        Lower bound of the solver's density that defines the tumor area.

    Returns
    -------
    dict
        ``dice 0.2``, ``dice 0.4``, ``dice 0.8``, ``mae wm``, ``mae gm``, ``mae csf``, ``mae tumor`` (NaN where a
        tissue or the tumor area is absent).
    """
    as_volume = lambda a: Volume.from_array(np.asarray(a, dtype=np.float32), spacing_mm)  # noqa: E731
    p, t = as_volume(predicted), as_volume(truth)
    scores = {f"dice {level:g}": value for level, value in zip(DICE_LEVELS, dice_at_levels(p, t, DICE_LEVELS).values())}
    by_tissue = mae_by_tissue(p, t, *(as_volume(m) for m in tissue))
    scores.update({f"mae {name}": value for name, value in by_tissue.items()})
    area = t.array > tumor_min
    scores["mae tumor"] = float(np.abs(p.array - t.array)[area].mean()) if area.any() else float("nan")
    return scores


def mean_scores(rows: list) -> dict:
    """The mean of each score over cases (NaN entries skipped; NaN when all are) and the number of cases."""
    keys = rows[0].keys() if rows else ()
    out = {}
    for key in keys:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[key] = float(values.mean()) if len(values) else float("nan")
    out["cases"] = len(rows)
    return out
