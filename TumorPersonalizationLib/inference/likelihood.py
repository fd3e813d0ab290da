"""The imaging likelihood of thesis chapter 5 (eqs. 4-7) and the calibration problem built on it.

Observations D = {y_T1Gd, y_FLAIR, y_PET} are independent given the simulated density u:

- T1Gd and FLAIR segmentations are Bernoulli per voxel with probability
  alpha(u; u_c, s) = 0.5 + 0.5 sign(u - u_c) (1 - exp(-(u - u_c)^2 / s^2)) (eq. 6),
  a soft step at the visibility threshold u_c with width s = sigma_alpha;
- normalised FET-PET is Gaussian, y ~ N(b u, sigma^2) (eq. 7); voxels with y = 0 count as censored at zero
  (log P(b u + noise <= 0)), since uptake images cannot be negative.

log alpha and log(1 - alpha) are computed in closed form in log space (one of them is log(0.5) - q, the other
log1p(-0.5 exp(-q)) with q = (u - u_c)^2 / s^2), so voxels far from the threshold never produce log(0).

The eleven parameters (Dw, rho, T, seed x/y/z in RAS mm, u_c^T1Gd, u_c^FLAIR, sigma_alpha, b, sigma; the last two
only with PET) have uniform priors: the pathology ranges of the thesis' Learn-Morph-Infer chapter (which contain
Table II's), Table II's imaging ranges, a seed box around the T1Gd centre of mass of half-width one equivalent
lesion radius (at least 5 mm), and a T range from the lesion size (see :func:`time_range_days`). Dw, rho and T
are sampled as logarithms (the prior stays uniform in natural units; :class:`BoxPrior` adds the Jacobian).

For speed the likelihood is evaluated on a region of interest: the bounding box of the FLAIR and T1Gd masks grown
by ``roi_margin_mm`` (15 mm: with 10 mm the no-flux faces of the box, which hold the low-density tail back,
shifted mu2 and the visibility thresholds of the benchmark case out of their 95 % intervals), optionally on a
coarser grid (``grid_mm``). The simulation runs in the tissue maps
cropped to that box (no flux through its faces); voxels outside it are assumed to agree with the data (no tumor,
no signal). On a coarser grid the masks become partial-volume fractions and each voxel's term is weighted by its
volume in units of the original voxels, so the posterior keeps the sharpness of the full-resolution likelihood.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from ..errors import InputError
from ..imaging.io import resample_smooth
from ..imaging.volume import Geometry, Volume, bounding_box, require_same_grid
from ..models.fisher_kolmogorov import DEFAULT_STEPS, Domain, StepSettings
from ..validation import binary
from .priors import BoxPrior

LOG_HALF = math.log(0.5)

PATHOLOGY_RANGES = {"Dw": (0.02, 1.5), "rho": (0.002, 0.2)}   # mm^2/day, 1/day
IMAGING_RANGES = {"uc_T1Gd": (0.6, 0.8), "uc_FLAIR": (0.05, 0.6), "sigma_alpha": (0.05, 0.08),
                  "b": (0.6, 1.02), "sigma": (0.01, 0.25)}      # thesis Table II
T_LIMITS_DAYS = (20.0, 1500.0)


def bernoulli_log_likelihood(u: np.ndarray, y: np.ndarray, uc: float, sigma_alpha: float) -> np.ndarray:
    """Per-voxel log p(y | u) of the double-logistic Bernoulli model; ``y`` may be a fraction in [0, 1]."""
    u = np.asarray(u, dtype=np.float32)
    q = np.square((u - np.float32(uc)) / np.float32(sigma_alpha))
    far = np.float32(LOG_HALF) - q                       # log of the small probability
    near = np.log1p(np.float32(-0.5) * np.exp(-q))       # log of the large probability
    above = u >= uc
    log_alpha = np.where(above, near, far)
    log_not_alpha = np.where(above, far, near)
    return y * log_alpha + (np.float32(1.0) - y) * log_not_alpha


def gaussian_log_likelihood(u: np.ndarray, y: np.ndarray, b: float, sigma: float) -> np.ndarray:
    """Per-voxel log N(y; b u, sigma^2), with y = 0 read as censored: log P(b u + noise <= 0).

    Uptake images are non-negative, so a zero is "at or below zero" rather than exactly zero (a Tobit model);
    without this the background's clipped noise contradicts the Gaussian and outweighs the segmentations.
    """
    y = np.asarray(y, dtype=np.float32)
    mean = np.float32(b) * np.asarray(u, dtype=np.float32)
    r = (y - mean) / np.float32(sigma)
    density = np.float32(-0.5) * r * r - np.float32(math.log(sigma) + 0.5 * math.log(2 * math.pi))
    censored = log_ndtr(-mean / np.float32(sigma)).astype(np.float32)
    return np.where(y > 0, density, censored)


@dataclass(frozen=True)
class Observation:
    """Validated patient data on the tissue maps' grid: T1Gd and FLAIR masks (bool), optional PET in [0, 1]."""

    t1gd: Volume
    flair: Volume
    pet: Volume | None = None

    @classmethod
    def from_volumes(cls, t1gd: Volume, flair: Volume, pet: Volume | None, tissue_grid: Geometry,
                     names=("--t1gd", "--flair", "--pet"), grid_name: str = "the tissue maps") -> "Observation":
        """Check the inputs and normalise them.

        FLAIR must cover at least as many voxels as T1Gd (FLAIR shows the whole visible lesion); the union is used
        so a FLAIR mask that misses part of the enhancing core does not contradict it. PET must be finite and
        non-negative; it is divided by its maximum inside the FLAIR lesion so the lesion peaks at 1.
        """
        reference = Volume(np.zeros(tissue_grid.shape, np.uint8), tissue_grid)
        require_same_grid(reference, grid_name, t1gd, names[0])
        require_same_grid(reference, grid_name, flair, names[1])
        t1 = binary(t1gd.array, names[0], "a binary segmentation")
        fl = binary(flair.array, names[1], "a binary segmentation")
        if not t1.any():
            raise InputError(f"{names[0]}: the T1Gd segmentation is empty")
        if np.count_nonzero(fl) < np.count_nonzero(t1):
            raise InputError(f"{names[1]}: the FLAIR segmentation ({np.count_nonzero(fl)} voxels) is smaller than "
                             f"the T1Gd segmentation ({np.count_nonzero(t1)} voxels); FLAIR should contain the "
                             f"whole visible lesion")
        fl = fl | t1
        pet_volume = None
        if pet is not None:
            require_same_grid(reference, grid_name, pet, names[2])
            values = pet.array.astype(np.float32)
            if not np.all(np.isfinite(values)):
                raise InputError(f"{names[2]}: the PET image contains NaN or infinite values")
            if values.min() < 0:
                raise InputError(f"{names[2]}: the PET image has negative values (min {values.min():.3g}); "
                                 f"give a normalised uptake image")
            peak = float(values[fl].max())
            if peak <= 0:
                raise InputError(f"{names[2]}: the PET image is zero inside the lesion")
            pet_volume = pet.like(np.clip(values / peak, 0.0, None))
        return cls(t1gd.like(t1), flair.like(fl), pet_volume)

    def lesion_geometry(self) -> tuple:
        """(T1Gd centre of mass in RAS mm, equivalent radius of the FLAIR lesion in mm, T1Gd radius in mm)."""
        g = self.t1gd.geometry
        centre = g.index_to_ras(np.argwhere(self.t1gd.array).mean(axis=0))
        ml = g.voxel_volume_ml
        radius = lambda mask: (3.0 * np.count_nonzero(mask) * ml * 1000.0 / (4.0 * math.pi)) ** (1 / 3)  # noqa
        return centre, radius(self.flair.array), radius(self.t1gd.array)


def time_range_days(flair_radius_mm: float) -> tuple:
    """T range that lets the fastest and the slowest prior tumor reach the lesion's size.

    A Fisher-Kolmogorov front travels at v = 2 sqrt(Dw rho); the lesion radius R is reached after about R / v.
    The range spans [R / (2 v_max), 3 R / v_min + 60 days], clipped to [20, 1500] days (the upper end of the
    thesis' ranges).
    """
    v_max = 2.0 * math.sqrt(PATHOLOGY_RANGES["Dw"][1] * PATHOLOGY_RANGES["rho"][1])
    v_min = 2.0 * math.sqrt(PATHOLOGY_RANGES["Dw"][0] * PATHOLOGY_RANGES["rho"][0])
    low = max(T_LIMITS_DAYS[0], flair_radius_mm / (2.0 * v_max))
    high = min(T_LIMITS_DAYS[1], 3.0 * flair_radius_mm / v_min + 60.0)
    return low, max(high, low + 10.0)


def build_prior(observation: Observation) -> BoxPrior:
    """The case-specific prior of the module docstring."""
    centre, flair_radius, t1_radius = observation.lesion_geometry()
    half = max(5.0, t1_radius)
    t_low, t_high = time_range_days(flair_radius)
    names = ["Dw", "rho", "T", "x", "y", "z", "uc_T1Gd", "uc_FLAIR", "sigma_alpha"]
    low = [PATHOLOGY_RANGES["Dw"][0], PATHOLOGY_RANGES["rho"][0], t_low, *(centre - half),
           *(IMAGING_RANGES[k][0] for k in ("uc_T1Gd", "uc_FLAIR", "sigma_alpha"))]
    high = [PATHOLOGY_RANGES["Dw"][1], PATHOLOGY_RANGES["rho"][1], t_high, *(centre + half),
            *(IMAGING_RANGES[k][1] for k in ("uc_T1Gd", "uc_FLAIR", "sigma_alpha"))]
    # Dw, rho and T in log space: the identifiable combinations mu1 = sqrt(Dw T) and mu2 = sqrt(rho T) are then
    # linear in the sampled coordinates, which the covariance-shaped proposals follow well.
    log_scale = [True, True, True, False, False, False, False, False, False]
    if observation.pet is not None:
        names += ["b", "sigma"]
        low += [IMAGING_RANGES["b"][0], IMAGING_RANGES["sigma"][0]]
        high += [IMAGING_RANGES["b"][1], IMAGING_RANGES["sigma"][1]]
        log_scale += [False, False]
    return BoxPrior(tuple(names), tuple(low), tuple(high), tuple(log_scale))


def roi_geometry(observation: Observation, margin_mm: float, grid_mm: float | None) -> Geometry:
    """The region of interest of the module docstring: the FLAIR mask's bounding box grown by ``margin_mm``, on the
    tissue grid's voxels (``grid_mm`` None) or on an isotropic ``grid_mm`` grid over the same box. Shared by TMCMC's
    likelihood and NPE's simulator, so both simulate in the same box."""
    g = observation.flair.geometry
    box = bounding_box(observation.flair.array, np.ceil(margin_mm / np.asarray(g.spacing_mm)).astype(int))
    lo, hi = np.array([s.start for s in box]), np.array([s.stop for s in box])
    origin = g.index_to_ras(lo)
    if grid_mm is None:
        return Geometry(hi - lo, g.spacing_mm, origin, g.direction_ras)
    extent = (hi - lo) * np.asarray(g.spacing_mm)
    shape = np.maximum(np.round(extent / grid_mm).astype(int), 1)
    # Same box: the first coarse voxel centre sits half a coarse voxel inside the box's corner.
    corner = g.index_to_ras(lo - 0.5)
    origin = corner + g.direction_matrix @ (np.full(3, grid_mm) / 2.0)
    return Geometry(shape, (grid_mm,) * 3, origin, g.direction_ras)


class CalibrationProblem:
    """Log-likelihood of parameter batches for one patient: picklable, so process pools and Dask can run it.

    Parameters
    ----------
    wm, gm : Volume
        Tissue maps (the observation's grid).
    observation : Observation
    prior : BoxPrior
        From :func:`build_prior` (defines the parameter order).
    ratio : float
        Dw / Dg.
    roi_margin_mm : float
    grid_mm : float or None
        Calibration grid spacing; None keeps the tissue maps' spacing.
    steps : StepSettings
        Solver time-stepping during calibration.
    csf : Volume, optional
        CSF map on the tissue grid; the surrogate forward model needs it.
    forward : {"numerical", "surrogate"}
        The forward model: the Fisher-Kolmogorov solver on the ROI grid, or the trained neural surrogate
        (:class:`~TumorPersonalizationLib.surrogate.model.SurrogateRegion`: crops read from the whole tissue maps,
        densities pasted onto the ROI grid).
    surrogate_weights : path, optional
        Surrogate weights (default: the shipped ones).
    """

    def __init__(self, wm: Volume, gm: Volume, observation: Observation, prior: BoxPrior, *, ratio: float = 10.0,
                 roi_margin_mm: float = 15.0, grid_mm: float | None = None, steps: StepSettings = DEFAULT_STEPS,
                 csf: Volume | None = None, forward: str = "numerical", surrogate_weights=None):
        self.prior = prior
        self.names = prior.names
        self.steps = steps
        roi = roi_geometry(observation, roi_margin_mm, grid_mm)
        self.roi = roi
        take = lambda v: resample_smooth(v, roi)  # noqa: E731
        if forward == "surrogate":
            from ..imaging.tissue import TissueMaps
            from ..surrogate.model import SurrogateRegion, load_surrogate

            self.domain = SurrogateRegion(TissueMaps(wm, gm, csf), roi, load_surrogate(surrogate_weights), ratio)
            self.batch = self.domain.batch
        elif forward == "numerical":
            self.domain = Domain(take(wm).array, take(gm).array, roi.spacing_mm, ratio=ratio)
            self.batch = self.BATCH
        else:
            raise InputError(f"forward model {forward!r}: choose 'numerical' or 'surrogate'")
        self.forward = forward
        self.t1gd = take(observation.t1gd).array
        self.flair = take(observation.flair).array
        self.pet = take(observation.pet).array if observation.pet is not None else None
        self.voxel_weight = float(np.prod(roi.spacing_mm) / np.prod(observation.t1gd.geometry.spacing_mm))

    BATCH = 8  # densities held at once per call
    threads = 1  # simulations side by side within one call (one core each); raise it where workers have idle cores

    def parameters(self, z: np.ndarray) -> dict:
        """Natural-unit parameters of one transformed point, by name."""
        return dict(zip(self.names, self.prior.to_natural(z)))

    def log_likelihood_of_density(self, u: np.ndarray, p: dict) -> float:
        ll = bernoulli_log_likelihood(u, self.t1gd, p["uc_T1Gd"], p["sigma_alpha"]).sum(dtype=np.float64)
        ll += bernoulli_log_likelihood(u, self.flair, p["uc_FLAIR"], p["sigma_alpha"]).sum(dtype=np.float64)
        if self.pet is not None:
            ll += gaussian_log_likelihood(u, self.pet, p["b"], p["sigma"]).sum(dtype=np.float64)
        return float(self.voxel_weight * ll)

    def simulate(self, p: dict) -> np.ndarray:
        """Density on the ROI grid for natural parameters ``p``; raises InputError for a seed outside WM/GM."""
        seed = self.roi.ras_to_index([p["x"], p["y"], p["z"]])
        return self.domain.simulate(p["Dw"], p["rho"], p["T"], seed, parallel=False, steps=self.steps)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """(m, dim) transformed points -> (m,) log likelihoods; -inf where the seed is not in WM/GM.

        Valid points go to the batched forward model ``batch`` at a time (numerical solver: ``BATCH``, with
        ``threads`` simulations side by side, one core each), which bounds memory at ``batch`` ROI-sized densities.
        """
        points = [self.parameters(point) for point in np.atleast_2d(z)]
        out = np.full(len(points), -np.inf)
        valid, seeds = [], []
        for n, p in enumerate(points):
            seed = self.roi.ras_to_index([p["x"], p["y"], p["z"]])
            try:
                self.domain.check_seed(seed)
            except InputError:
                continue
            valid.append(n)
            seeds.append(seed)
        for start in range(0, len(valid), self.batch):
            block = valid[start:start + self.batch]
            densities = self.domain.simulate_batch([points[n]["Dw"] for n in block], [points[n]["rho"] for n in block],
                                                   [points[n]["T"] for n in block], seeds[start:start + self.batch],
                                                   steps=self.steps, workers=self.threads)
            for n, u in zip(block, densities):
                out[n] = self.log_likelihood_of_density(u, points[n])
        return out


class FidelityPair:
    """One likelihood on two grids as one picklable batch function, so that one executor (one process pool or
    Dask client) serves both: a batch's last column says which grid (0: coarse, 1: fine) evaluates its rows.

    Parameters
    ----------
    coarse, fine : CalibrationProblem
        The same observation and prior on a coarse calibration grid and on the data's grid.
    """

    COARSE, FINE = 0.0, 1.0

    def __init__(self, coarse: CalibrationProblem, fine: CalibrationProblem):
        self.coarse, self.fine = coarse, fine

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.atleast_2d(batch)
        out = np.full(len(batch), -np.inf)
        for level, problem in ((self.COARSE, self.coarse), (self.FINE, self.fine)):
            rows = batch[:, -1] == level
            if rows.any():
                out[rows] = problem(batch[rows, :-1])
        return out

    @classmethod
    def on(cls, executor, level: float):
        """``z -> log likelihoods`` on one grid through ``executor`` (which runs a FidelityPair)."""
        return lambda z: executor(np.column_stack([np.atleast_2d(z), np.full(len(z), level)]))
