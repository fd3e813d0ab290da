"""Synthetic patients: a tumor grown with the project's solver, imaged by the thesis' observation model.

No glioma patient data ships anywhere, so tests, benchmarks and training data use cases made here: T1Gd and FLAIR
masks are the density thresholded at known visibility levels (``sigma_alpha=None``), or drawn from the thesis'
Bernoulli observation model with that threshold and width (``sigma_alpha`` given: the data then follow exactly the
likelihood that calibration assumes); FET-PET is b u plus Gaussian noise (clipped at 0, since uptake images are
non-negative).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forward import Seed, simulate
from .imaging.tissue import TissueMaps
from .imaging.volume import Volume
from .inference.likelihood import bernoulli_log_likelihood
from .models.fisher_kolmogorov import DEFAULT_STEPS, StepSettings


@dataclass(frozen=True)
class SyntheticCase:
    density: Volume
    t1gd: Volume
    flair: Volume
    pet: Volume | None
    truth: dict


def synthetic_case(tissue: TissueMaps, dw_mm2_per_day: float, rho_per_day: float, days: float, seed_ras_mm, *,
                   uc_t1gd: float = 0.7, uc_flair: float = 0.25, pet_b: float | None = None,
                   pet_sigma: float = 0.05, sigma_alpha: float | None = None, ratio: float = 10.0,
                   rng_seed: int = 0, steps: StepSettings = DEFAULT_STEPS) -> SyntheticCase:
    """Simulate and image one synthetic tumor (masks as uint8 0/1 Volumes on the tissue grid); ``steps``: the
    solver's time stepping (``StepSettings(method="rk4")`` for the fine-step reference)."""
    density = simulate(tissue, dw_mm2_per_day, rho_per_day, days, Seed(ras_mm=tuple(seed_ras_mm)), ratio=ratio,
                       steps=steps)
    u = density.array
    rng = np.random.default_rng(rng_seed)

    def segment(uc):
        if sigma_alpha is None:
            return u >= uc
        alpha = np.exp(bernoulli_log_likelihood(u, np.float32(1.0), uc, sigma_alpha))
        return rng.uniform(size=u.shape) < alpha

    t1gd = segment(uc_t1gd)
    flair = segment(uc_flair) | t1gd
    pet = None
    if pet_b is not None:
        noise = rng.normal(0.0, pet_sigma, u.shape).astype(np.float32)
        pet = density.like(np.clip(pet_b * u + noise, 0.0, None))
    truth = {"Dw": dw_mm2_per_day, "rho": rho_per_day, "T": days, "x": seed_ras_mm[0], "y": seed_ras_mm[1],
             "z": seed_ras_mm[2], "uc_T1Gd": uc_t1gd, "uc_FLAIR": uc_flair,
             "mu1": float(np.sqrt(dw_mm2_per_day * days)), "mu2": float(np.sqrt(rho_per_day * days))}
    if pet_b is not None:
        truth.update(b=pet_b, sigma=pet_sigma)
    if sigma_alpha is not None:
        truth["sigma_alpha"] = sigma_alpha
    return SyntheticCase(density, density.like(t1gd.astype(np.uint8)), density.like(flair.astype(np.uint8)), pet,
                         truth)
