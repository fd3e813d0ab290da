"""Box priors sampled in a transformed space.

Each parameter has a uniform prior on ``[low, high]`` in its natural units. Rates are sampled as their logarithm
(``log_scale=True``), which makes proposals scale-free; the change of variables adds ``log |dx/dz| = z`` to the
log density, so the prior on the natural scale is still uniform.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class BoxPrior:
    """Independent uniform priors, some sampled in log space.

    Attributes
    ----------
    names : tuple of str
    low, high : tuple of float
        Bounds in natural units (``low < high``; ``low > 0`` for log-scale parameters).
    log_scale : tuple of bool
        Sample this parameter as log(x).
    """

    names: tuple
    low: tuple
    high: tuple
    log_scale: tuple

    def __post_init__(self):
        n = len(self.names)
        if not (len(self.low) == len(self.high) == len(self.log_scale) == n):
            raise InputError("prior: names, bounds and log_scale must have the same length")
        for name, lo, hi, log in zip(self.names, self.low, self.high, self.log_scale):
            if not lo < hi:
                raise InputError(f"prior of {name}: lower bound {lo} must be below upper bound {hi}")
            if log and lo <= 0:
                raise InputError(f"prior of {name}: a log-scale parameter needs a positive lower bound, got {lo}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def _z_bounds(self):
        log = np.asarray(self.log_scale)
        lo = np.where(log, np.log(np.maximum(self.low, 1e-300)), self.low)
        hi = np.where(log, np.log(np.maximum(self.high, 1e-300)), self.high)
        return lo, hi

    def to_natural(self, z: np.ndarray) -> np.ndarray:
        """(..., dim) transformed -> natural units."""
        z = np.asarray(z, dtype=np.float64)
        return np.where(np.asarray(self.log_scale), np.exp(np.clip(z, -700.0, 700.0)), z)

    def to_transformed(self, x: np.ndarray) -> np.ndarray:
        """(..., dim) natural units -> transformed."""
        x = np.asarray(x, dtype=np.float64)
        return np.where(np.asarray(self.log_scale), np.log(np.maximum(x, 1e-300)), x)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, dim) draws in the transformed space, uniform in natural units."""
        x = rng.uniform(self.low, self.high, size=(n, self.dim))
        return self.to_transformed(x)

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """Log prior density of transformed points (n, dim) up to a constant; -inf outside the box."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        lo, hi = self._z_bounds()
        inside = np.all((z >= lo) & (z <= hi), axis=1)
        jacobian = np.sum(np.where(np.asarray(self.log_scale), z, 0.0), axis=1)
        return np.where(inside, jacobian, -np.inf)
