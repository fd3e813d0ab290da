"""The parameters NPE infers, in the scaled space the network sees, and the way back to natural units.

One imaging time point determines mu1 = sqrt(Dw T) (mm) and mu2 = sqrt(rho T), not Dw, rho and T separately
(:mod:`TumorPersonalizationLib.lmi.parameters`), so NPE infers

    mu1, mu2, the seed, u_c^T1Gd, u_c^FLAIR  (and with FET-PET its scale b and noise sigma).

The seed is an offset in mm from the observation crop's centre (the T1Gd centre of mass) along the grid's i, j, k
axes: the crop is aligned with those axes, so an offset means the same thing in every crop whatever the patient's
orientation, which an amortised network needs. The *scaled* coordinates divide each parameter by a fixed scale
(:data:`SCALE`) so that all are of order one; the scales are case-independent, so a network trained on many cases
reads the same coordinates for each.

Back to natural units (Dw, rho, T, seed x / y / z in RAS mm, ...) T must be chosen: any T gives the same density
(Dw = mu1^2 / T, rho = mu2^2 / T), only the reported Dw, rho and T move along the unidentifiable ridge. Simulations
fix the front speed v = 2 sqrt(Dw rho) at Learn-Morph-Infer's 200 mm/year
(:func:`~TumorPersonalizationLib.lmi.parameters.from_time_independent`); reports draw T from TMCMC's prior given
mu1 and mu2 (:func:`ridge_days`), so Dw, rho and T show the prior's spread along the ridge as TMCMC's do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..imaging.volume import Geometry
from ..lmi.parameters import from_time_independent, to_time_independent

GROWTH_NAMES = ("mu1", "mu2", "di", "dj", "dk", "uc_T1Gd", "uc_FLAIR")
PET_NAMES = ("b", "sigma")
SCALE = {"mu1": 10.0, "mu2": 3.0, "di": 10.0, "dj": 10.0, "dk": 10.0, "uc_T1Gd": 1.0, "uc_FLAIR": 1.0,
         "b": 1.0, "sigma": 0.1}
"""Scaled coordinate = natural value / scale (mu1 and the seed offsets in mm; the rest dimensionless)."""
NATURAL_NAMES = ("Dw", "rho", "T", "x", "y", "z", "uc_T1Gd", "uc_FLAIR")
"""Columns of natural-unit samples (TMCMC's names without sigma_alpha: NPE's observation is thresholded)."""


@dataclass(frozen=True)
class ParameterSpace:
    """NPE's parameters for one observation frame.

    Attributes
    ----------
    geometry : Geometry
        The grid where the simulations run (the lesion's region of interest).
    centre_index : tuple of 3 float
        The crop centre as a continuous voxel index of ``geometry``.
    pet : bool
        Whether b and sigma (FET-PET) are inferred too.
    """

    geometry: Geometry
    centre_index: tuple
    pet: bool = False

    @property
    def names(self) -> tuple:
        """Scaled coordinates' names, in order."""
        return GROWTH_NAMES + (PET_NAMES if self.pet else ())

    @property
    def natural_names(self) -> tuple:
        return NATURAL_NAMES + (PET_NAMES if self.pet else ())

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def scale(self) -> np.ndarray:
        return np.array([SCALE[n] for n in self.names])

    def _check(self, array: np.ndarray, width: int, what: str) -> np.ndarray:
        array = np.atleast_2d(np.asarray(array, dtype=np.float64))
        if array.shape[1] != width:
            raise InputError(f"{what}: expected {width} columns, got shape {array.shape}")
        return array

    def seed_index(self, scaled) -> np.ndarray:
        """(n, 3) continuous seed indices of ``geometry`` from (n, dim) scaled points."""
        scaled = self._check(scaled, self.dim, "scaled parameters")
        offset_mm = scaled[:, 2:5] * self.scale[2:5]
        return np.asarray(self.centre_index) + offset_mm / np.asarray(self.geometry.spacing_mm)

    def growth(self, scaled) -> tuple:
        """(Dw in mm^2/day, rho in 1/day, T in days), each (n,), from (n, dim) scaled points (v = 200 mm/year)."""
        scaled = self._check(scaled, self.dim, "scaled parameters")
        return from_time_independent(scaled[:, 0] * SCALE["mu1"], scaled[:, 1] * SCALE["mu2"])

    def to_natural(self, scaled, days=None) -> np.ndarray:
        """(n, dim) scaled -> (n, len(natural_names)) natural units (Dw, rho, T, x, y, z RAS mm, ...); ``days``
        (n,): the T of each point (default: the one at v = 200 mm/year)."""
        scaled = self._check(scaled, self.dim, "scaled parameters")
        if days is None:
            dw, rho, days = self.growth(scaled)
        else:
            days = np.asarray(days, dtype=np.float64)
            dw, rho = (scaled[:, 0] * SCALE["mu1"]) ** 2 / days, (scaled[:, 1] * SCALE["mu2"]) ** 2 / days
        ras = np.atleast_2d(self.geometry.index_to_ras(self.seed_index(scaled)))
        rest = scaled[:, 5:] * self.scale[5:]
        return np.column_stack([dw, rho, days, ras, rest])

    def to_scaled(self, natural) -> np.ndarray:
        """(n, len(natural_names)) natural units -> (n, dim) scaled; the inverse of :meth:`to_natural` whenever
        the natural point has the front speed of :mod:`~TumorPersonalizationLib.lmi.parameters` (any other v maps
        to the same scaled point: the density is the same)."""
        natural = self._check(natural, len(self.natural_names), "natural parameters")
        mu1, mu2 = to_time_independent(natural[:, 0], natural[:, 1], natural[:, 2])
        index = np.atleast_2d(self.geometry.ras_to_index(natural[:, 3:6]))
        offset_mm = (index - np.asarray(self.centre_index)) * np.asarray(self.geometry.spacing_mm)
        values = np.column_stack([mu1, mu2, offset_mm, natural[:, 6:]])
        return values / self.scale

    def box(self, prior) -> tuple:
        """(low, high) of the scaled box prior from TMCMC's case prior (``inference.likelihood.build_prior``).

        mu1 and mu2 span what the prior's Dw, rho and T ranges allow (sqrt(Dw_low T_low) .. sqrt(Dw_high T_high));
        the seed offsets span the prior's seed box (its half-width, along each grid axis); the visibility levels,
        b and sigma keep the prior's ranges. TMCMC's prior is uniform in Dw, rho and T; this one is uniform in
        mu1, mu2 (sbi's proposal correction needs a box).
        """
        bounds = {n: (lo, hi) for n, lo, hi in zip(prior.names, prior.low, prior.high)}
        low, high = {}, {}
        for mu, rate in (("mu1", "Dw"), ("mu2", "rho")):
            low[mu] = float(np.sqrt(bounds[rate][0] * bounds["T"][0]))
            high[mu] = float(np.sqrt(bounds[rate][1] * bounds["T"][1]))
        half = 0.5 * (bounds["x"][1] - bounds["x"][0])
        for axis in ("di", "dj", "dk"):
            low[axis], high[axis] = -half, half
        for name in ("uc_T1Gd", "uc_FLAIR") + (PET_NAMES if self.pet else ()):
            low[name], high[name] = bounds[name]
        return (np.array([low[n] for n in self.names]) / self.scale,
                np.array([high[n] for n in self.names]) / self.scale)


def ridge_days(mu1_mm, mu2, prior, rng: np.random.Generator) -> np.ndarray:
    """T (days) for each (mu1, mu2), drawn from TMCMC's prior (uniform in Dw, rho and T) given mu1 and mu2.

    With Dw = mu1^2 / T and rho = mu2^2 / T the change of variables has Jacobian 4 mu1 mu2 / T^2, so given
    (mu1, mu2) T has density proportional to 1 / T^2 where Dw, rho and T all lie in the prior's ranges (1 / T is
    then uniform). Where no T fits (mu1, mu2 outside what the ranges allow together) the nearest bound is used.

    Parameters
    ----------
    mu1_mm, mu2 : (n,) array
    prior : BoxPrior
        Names Dw, rho and T among its parameters.
    rng : numpy Generator
    """
    bounds = {n: (lo, hi) for n, lo, hi in zip(prior.names, prior.low, prior.high)}
    mu1_sq, mu2_sq = np.square(mu1_mm), np.square(mu2)
    low = np.maximum.reduce([np.full_like(mu1_sq, bounds["T"][0]), mu1_sq / bounds["Dw"][1],
                             mu2_sq / bounds["rho"][1]])
    high = np.minimum.reduce([np.full_like(mu1_sq, bounds["T"][1]), mu1_sq / bounds["Dw"][0],
                              mu2_sq / bounds["rho"][0]])
    high = np.maximum(high, low)
    return 1.0 / rng.uniform(1.0 / high, 1.0 / low)
