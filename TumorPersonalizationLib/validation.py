"""Checks of user-supplied arrays at the Lib's public boundary, each raising one clear InputError."""
from __future__ import annotations

import numpy as np

from .errors import InputError


def unit_interval(array, name: str, what: str = "values", tolerance: float = 1e-4) -> np.ndarray:
    """``array`` as float32 after checking it is numeric, finite and within [0, 1] (up to ``tolerance``)."""
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0 + tolerance:
        raise InputError(f"{name}: {what} must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
    return np.minimum(array, np.float32(1.0))


def binary(array, name: str, what: str = "a binary mask") -> np.ndarray:
    """``array`` as bool after checking it holds only 0 and 1 (or is boolean)."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name}: expected {what}, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    values = np.unique(array)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise InputError(f"{name}: expected {what} (0/1), found values {shown}")
    return array.astype(bool)
