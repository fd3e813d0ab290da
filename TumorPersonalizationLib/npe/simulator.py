"""NPE's simulator: scaled parameter sets -> Fisher-Kolmogorov densities on the lesion's region of interest ->
observations (:mod:`.observation`), batched through an executor (:mod:`TumorPersonalizationLib.execution`).

The region of interest and the solver set-up are TMCMC's (:class:`~TumorPersonalizationLib.inference.likelihood.
CalibrationProblem`): the FLAIR mask's bounding box grown by ``roi_margin_mm``, the tissue maps resampled to it,
no flux through its faces, one core per simulation. The observation model is the thesis' (ch. 6): the density
thresholded at u_c^T1Gd and u_c^FLAIR (no noise), and with FET-PET b u + N(0, sigma^2) clipped at 0.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..imaging.io import resample_smooth
from ..imaging.volume import Geometry
from ..models.fisher_kolmogorov import DEFAULT_STEPS, Domain, StepSettings
from .observation import CropFrame, assemble, label_map, thresholded_label_map, variable_channels
from .parameters import ParameterSpace


class NPESimulator:
    """Picklable ``simulator(theta) -> x`` for process pools and Dask.

    Parameters
    ----------
    wm, gm : (ni, nj, nk) float32
        Tissue maps on the region of interest.
    space : ParameterSpace
        Its geometry is the region of interest's.
    frame : CropFrame
    ratio : float
        Dw / Dg.
    steps : StepSettings
    noise_seed : int
        Seed of the PET noise; each parameter set's noise depends only on it and the set's values, so results do
        not depend on how the batch was split among workers.
    """

    BATCH = 8       # densities held at once per call
    threads = 1     # simulations side by side within one call, one core each

    def __init__(self, wm: np.ndarray, gm: np.ndarray, space: ParameterSpace, frame: CropFrame, *,
                 ratio: float = 10.0, steps: StepSettings = DEFAULT_STEPS, noise_seed: int = 0):
        self.domain = Domain(wm, gm, space.geometry.spacing_mm, ratio=ratio)
        self.space, self.frame, self.steps, self.noise_seed = space, frame, steps, int(noise_seed)
        self.channels = len(variable_channels(space.pet))

    @property
    def output_size(self) -> int:
        """Values per simulation (flattened variable channels)."""
        return self.channels * self.frame.size ** 3

    def observe(self, density: np.ndarray, point: np.ndarray) -> np.ndarray:
        """(Cv, N, N, N) float32 observation channels of one density for scaled parameters ``point``."""
        natural = dict(zip(self.space.natural_names, self.space.to_natural(point)[0]))
        grids = [thresholded_label_map(density, natural["uc_T1Gd"], natural["uc_FLAIR"])]
        if self.space.pet:
            rng = np.random.default_rng([self.noise_seed, zlib.crc32(np.ascontiguousarray(point).tobytes())])
            noise = rng.normal(0.0, natural["sigma"], density.shape).astype(np.float32)
            grids.append(np.clip(np.float32(natural["b"]) * density + noise, 0.0, None))
        return self.frame.crop(np.stack(grids))

    def valid(self, theta: np.ndarray) -> np.ndarray:
        """(m,) bool: the seed lies in the WM/GM domain (elsewhere the solver has nothing to grow in)."""
        seeds = self.space.seed_index(theta)
        ok = np.zeros(len(seeds), bool)
        for n, seed in enumerate(seeds):
            try:
                self.domain.check_seed(seed)
                ok[n] = True
            except InputError:
                pass
        return ok

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """(m, dim) scaled parameter sets -> (m, Cv * N^3) float32; rows of NaN where the seed is not in WM/GM."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        out = np.full((len(theta), self.output_size), np.nan, dtype=np.float32)
        valid = np.flatnonzero(self.valid(theta))
        seeds = self.space.seed_index(theta)
        dw, rho, days = self.space.growth(theta)
        for start in range(0, len(valid), self.BATCH):
            block = valid[start:start + self.BATCH]
            densities = self.domain.simulate_batch(dw[block], rho[block], days[block], seeds[block],
                                                   steps=self.steps, workers=self.threads)
            for n, u in zip(block, densities):
                out[n] = self.observe(u, theta[n]).ravel()
        return out


@dataclass(frozen=True)
class CaseProblem:
    """One case set up for NPE: parameter space and prior box, simulator, observed data.

    Attributes
    ----------
    space : ParameterSpace
    low, high : (dim,) float64
        The scaled box prior.
    simulator : NPESimulator
    observed : (C, N, N, N) float32
        The patient's observation (all channels).
    tissue_crop : (3, N, N, N) float32
    roi : Geometry
    """

    space: ParameterSpace
    low: np.ndarray
    high: np.ndarray
    simulator: NPESimulator
    observed: np.ndarray
    tissue_crop: np.ndarray
    roi: Geometry

    def assemble(self, variable: np.ndarray) -> np.ndarray:
        """(n, Cv * N^3) simulated channels -> (n, C, N, N, N) observations of this case."""
        return assemble(variable, self.tissue_crop, self.simulator.frame.size)


def case_problem(tissue, observation, prior, config: dict, *, ratio: float = 10.0, roi_margin_mm: float = 15.0,
                 grid_mm: float | None = None, steps: StepSettings = DEFAULT_STEPS, seed: int = 0) -> CaseProblem:
    """Set up NPE for one case.

    Parameters
    ----------
    tissue : TissueMaps
        On the observation's grid; CSF may be missing (its channel is then zero).
    observation : inference.likelihood.Observation
    prior : BoxPrior
        TMCMC's case prior (:func:`~TumorPersonalizationLib.inference.likelihood.build_prior`).
    config : dict
        NPE config (:mod:`.config`): its observation section.
    ratio, roi_margin_mm, grid_mm, steps
        As TMCMC's settings.
    seed : int
        PET noise seed.
    """
    from ..inference.likelihood import roi_geometry

    roi = roi_geometry(observation, roi_margin_mm, grid_mm)
    take = lambda volume: resample_smooth(volume, roi).array  # noqa: E731
    centre, _, _ = observation.lesion_geometry()
    space = ParameterSpace(roi, tuple(roi.ras_to_index(centre)), pet=observation.pet is not None)
    frame = CropFrame(space.centre_index, int(config["observation"]["crop_size"]), roi.spacing_mm,
                      float(config["observation"]["crop_spacing_mm"]))
    wm, gm = take(tissue.wm), take(tissue.gm)
    csf = take(tissue.csf) if tissue.csf is not None else np.zeros_like(wm)
    tissue_crop = frame.crop(np.stack([wm, gm, csf]))
    grids = [label_map(take(observation.t1gd), take(observation.flair))]
    if observation.pet is not None:
        grids.append(take(observation.pet))
    observed = np.concatenate([frame.crop(np.stack(grids)), tissue_crop]).astype(np.float32)
    simulator = NPESimulator(wm, gm, space, frame, ratio=ratio, steps=steps, noise_seed=seed)
    low, high = space.box(prior)
    return CaseProblem(space, low, high, simulator, observed, tissue_crop, roi)
