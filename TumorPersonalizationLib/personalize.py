"""One entry per personalization method, the same outputs for all.

A method returns a :class:`Personalization` (density on the tissue grid, optional uncertainty, parameters with
intervals, a JSON-ready report); :func:`write_outputs` turns it into files:

    density.nii.gz        the density the method recommends (TMCMC: posterior-predictive mean)
    density_std.nii.gz    its voxel-wise standard deviation (methods that sample)
    density_map.nii.gz    the density of the maximum-a-posteriori parameters (methods that sample)
    report.json           parameters, intervals, timings, settings, plans (sampling methods: marginal histograms)
    overview.png          slices through the lesion with the density
    posterior.png         marginals and pairwise scatter of the posterior (methods that sample)
    ctv_*.nii.gz, plan.png, probability_c>=*.nii.gz    the radiotherapy plans
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import radiotherapy
from .execution import make_executor
from .files import write_json
from .imaging.io import write_volume
from .imaging.tissue import TissueMaps
from .imaging.volume import Volume
from .inference import tmcmc
from .inference.likelihood import CalibrationProblem, Observation, build_prior
from .models.fisher_kolmogorov import DEFAULT_STEPS, Domain, StepSettings

OUTPUT_NAMES = ("density.nii.gz", "density_std.nii.gz", "density_map.nii.gz", "report.json", "overview.png",
                "posterior.png", "plan.png", "ctv_standard.nii.gz", "ctv_model.nii.gz", "ctv_probabilistic.nii.gz",
                f"probability_c>={radiotherapy.DEFAULT_THRESHOLD:g}.nii.gz")

IDENTIFIABILITY_NOTE = (
    "From one imaging time point only mu1 = sqrt(Dw T) and mu2 = sqrt(rho T) (and the front speed "
    "v = 2 sqrt(Dw rho) = 2 mu1 mu2 / T only up to T) are identifiable; Dw, rho and T separately are not. "
    "Read their intervals as the prior's spread along that ridge.")
SEED_NOTE = ("T counts days from a seed of c = 1 within 1.5 mm and a 3 mm cosine taper (the solver's convention); "
             "a different seed size shifts T.")
UNITS = {"Dw": "mm^2/day", "rho": "1/day", "T": "days", "x": "mm (RAS)", "y": "mm (RAS)", "z": "mm (RAS)",
         "uc_T1Gd": "density", "uc_FLAIR": "density", "sigma_alpha": "density", "b": "-", "sigma": "-",
         "mu1": "mm", "mu2": "-", "v": "mm/day"}


@dataclass
class Personalization:
    """What a method produced, on the tissue maps' grid."""

    method: str
    density: Volume
    parameters: dict
    report: dict
    density_std: Volume | None = None
    density_map: Volume | None = None
    samples: np.ndarray | None = None          # (n, p) natural units, equally weighted
    sample_names: tuple = ()
    predictive_samples: np.ndarray | None = None  # (k, ni, nj, nk) densities of posterior draws
    timings: dict = field(default_factory=dict)


def _with_derived(names, x: np.ndarray):
    """Append mu1, mu2 and v to (n, p) natural samples."""
    col = {n: x[:, i] for i, n in enumerate(names)}
    mu1 = np.sqrt(col["Dw"] * col["T"])
    mu2 = np.sqrt(col["rho"] * col["T"])
    v = 2.0 * np.sqrt(col["Dw"] * col["rho"])
    return tuple(names) + ("mu1", "mu2", "v"), np.column_stack([x, mu1, mu2, v])


def _summarise(names, x: np.ndarray, map_index: int) -> dict:
    out = {}
    for d, name in enumerate(names):
        lo, med, hi = np.percentile(x[:, d], [2.5, 50, 97.5])
        out[name] = {"map": float(x[map_index, d]), "mean": float(x[:, d].mean()), "median": float(med),
                     "ci95": [float(lo), float(hi)], "unit": UNITS.get(name, "")}
    return out


def simulate_parameter_sets(tissue: TissueMaps, natural: np.ndarray, names, ratio: float,
                            steps: StepSettings = DEFAULT_STEPS) -> np.ndarray:
    """Densities (k, ni, nj, nk) on the tissue grid for k natural-unit parameter sets (one core each, in threads)."""
    col = {n: natural[:, i] for i, n in enumerate(names)}
    domain = Domain(tissue.wm.array, tissue.gm.array, tissue.geometry.spacing_mm, ratio=ratio)
    seeds = tissue.geometry.ras_to_index(np.column_stack([col["x"], col["y"], col["z"]]))
    return domain.simulate_batch(col["Dw"], col["rho"], col["T"], seeds, steps=steps)


def posterior_draws(samples: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` of the posterior ``samples`` (m, d) without replacement, simulating equal ones only once.

    TMCMC's resampling and rejected moves repeat a sample, and the repeats carry its posterior weight: drawing
    among the distinct samples only would flatten the posterior.

    Returns
    -------
    distinct : (k,) int
        Indices into ``samples`` of the distinct draws (the ones to simulate).
    repeat : (min(n, m),) int
        For each draw, its position in ``distinct``: ``simulated[repeat]`` is the list of drawn densities.
    """
    draws = rng.choice(len(samples), size=min(n, len(samples)), replace=False)
    _, first, repeat = np.unique(samples[draws], axis=0, return_index=True, return_inverse=True)
    return draws[first], np.ravel(repeat)


def personalize_tmcmc(tissue: TissueMaps, observation: Observation, *, n_samples: int = 2048, seed: int = 0,
                      workers: int | None = None, dask_scheduler=None, grid_mm: float | None = None,
                      roi_margin_mm: float = 15.0, calibration_steps: StepSettings = DEFAULT_STEPS,
                      mcmc_steps: int = 1, predictive_draws: int = 32, ratio: float = 10.0, progress=None
                      ) -> Personalization:
    """Bayesian calibration with Transitional MCMC (thesis ch. 5) and the posterior-predictive density.

    Parameters
    ----------
    tissue : TissueMaps
        WM/GM maps on the observation's grid.
    observation : Observation
        T1Gd and FLAIR masks (and optional PET) on that grid.
    n_samples : int
        TMCMC population size (2048 as in the thesis).
    workers, dask_scheduler
        Where the forward runs go: a local process pool of ``workers`` processes (default: all cores), or a Dask
        scheduler address / client.
    grid_mm, roi_margin_mm, calibration_steps
        Calibration grid (None: the tissue grid), region-of-interest margin and solver step settings during
        sampling. The solver's default steps keep the model that made synthetic data; a looser
        ``step_tolerance`` (0.25: 40 % faster) already moved mu2 by 0.5 %, a whole posterior width, on the
        benchmark case. A coarser grid is faster but a different discretisation than the data's: on synthetic data
        it biases the posterior (README, "Bayesian calibration").
    mcmc_steps : int
        Metropolis steps per sample and stage (1, as in Ching & Chen; each costs one forward run per sample).
    predictive_draws : int
        Posterior draws simulated on the full tissue grid for the mean and standard deviation of the density.
    progress : callable(fraction) or None
        May raise :class:`~TumorPersonalizationLib.errors.Cancelled`.
    """
    started = time.perf_counter()
    steps = calibration_steps
    prior = build_prior(observation)
    problem = CalibrationProblem(tissue.wm, tissue.gm, observation, prior, ratio=ratio,
                                 roi_margin_mm=roi_margin_mm, grid_mm=grid_mm, steps=steps)
    executor = make_executor(problem, workers=workers, dask_scheduler=dask_scheduler)

    def on_stage(beta, stage):
        if progress is not None:  # beta climbs from ~1e-8 to 1 roughly evenly in log10
            progress(0.9 * min(1.0, max(0.0, 1.0 + math.log10(max(beta, 1e-12)) / 8.0)))

    try:
        result = tmcmc.sample(executor, prior, n_samples=n_samples, seed=seed, mcmc_steps=mcmc_steps,
                              progress=on_stage)
    finally:
        executor.close()
    sampled = time.perf_counter()

    names, natural = _with_derived(prior.names, result.natural)
    map_index = result.map_index
    rng = np.random.default_rng(seed)
    distinct, repeat = posterior_draws(result.samples, predictive_draws, rng)
    chosen = np.concatenate([[map_index], distinct])
    densities = simulate_parameter_sets(tissue, result.natural[chosen], prior.names, ratio)
    if progress is not None:
        progress(1.0)
    predictive = densities[1:][repeat]
    finished = time.perf_counter()

    parameters = _summarise(names, natural, map_index)
    timings = {"sampling_s": sampled - started, "predictive_s": finished - sampled, "total_s": finished - started}
    report = {
        "method": "tmcmc",
        "parameters": parameters,
        "identifiability": IDENTIFIABILITY_NOTE,
        "seed_convention": SEED_NOTE,
        "density_file": f"density.nii.gz = posterior-predictive mean over {len(predictive)} posterior draws "
                        f"({len(distinct)} distinct); "
                        f"density_map.nii.gz = the MAP parameters' density",
        "log_evidence": result.log_evidence,
        "forward_runs": result.evaluations + len(chosen),
        "stages": [{"beta": s.beta, "acceptance": s.acceptance, "proposal_scale": s.proposal_scale}
                   for s in result.stages],
        "timings_s": timings,
        "settings": {"n_samples": n_samples, "mcmc_steps": mcmc_steps, "seed": seed,
                     "grid_mm": list(problem.roi.spacing_mm),
                     "roi_shape": list(problem.roi.shape), "roi_margin_mm": roi_margin_mm,
                     "step_tolerance": steps.step_tolerance, "executor": type(executor).__name__,
                     "workers": executor.workers, "ratio": ratio,
                     "prior": {n: [lo, hi] for n, lo, hi in zip(prior.names, prior.low, prior.high)}},
    }
    return Personalization(
        method="tmcmc", density=tissue.wm.like(predictive.mean(axis=0).astype(np.float32)),
        density_std=tissue.wm.like(predictive.std(axis=0).astype(np.float32)),
        density_map=tissue.wm.like(densities[0]), parameters=parameters, report=report,
        samples=natural, sample_names=names, predictive_samples=predictive, timings=timings)


def marginal_histograms(samples: np.ndarray, names, bins: int = 30) -> dict:
    """Each parameter's marginal posterior as a normalised histogram (for plots in report readers, e.g. Slicer).

    Parameters
    ----------
    samples : (n, p) array
        Equally weighted samples in natural units.
    names : sequence of p str

    Returns
    -------
    dict
        name -> {"centres": bin centres (parameter units), "density": probability density (1/unit), "unit": str}.
    """
    out = {}
    for d, name in enumerate(names):
        column = np.asarray(samples[:, d], dtype=np.float64)
        low, high = float(column.min()), float(column.max())
        if high <= low:  # a collapsed marginal: one bin of width 1e-9 relative, so the density stays finite
            low, high = low - 1e-9 * max(abs(low), 1.0), high + 1e-9 * max(abs(high), 1.0)
        density, edges = np.histogram(column, bins=bins, range=(low, high), density=True)
        out[name] = {"centres": ((edges[:-1] + edges[1:]) / 2).tolist(), "density": density.tolist(),
                     "unit": UNITS.get(name, "")}
    return out


def brain_mask_from_tissue(tissue: TissueMaps) -> Volume:
    """Voxels where WM + GM + CSF >= 0.5 (the tissue maps' brain)."""
    total = tissue.wm.array + tissue.gm.array + (tissue.csf.array if tissue.csf is not None else 0.0)
    return tissue.wm.like(total >= 0.5)


def write_outputs(result: Personalization, out_dir, tissue: TissueMaps, observation: Observation, *,
                  margin_mm: float = radiotherapy.DEFAULT_MARGIN_MM, truth: dict | None = None) -> dict:
    """Write the files listed in the module docstring; returns the report (with the plans' summary)."""
    from pathlib import Path

    from .figures import density_overview, plan_overview, posterior_corner

    out = Path(out_dir)
    report = dict(result.report)
    core = observation.t1gd.like(observation.t1gd.array.astype(bool))
    brain = brain_mask_from_tissue(tissue)
    plans = radiotherapy.make_plans(result.density, core, margin_mm=margin_mm, brain_mask=brain, csf=tissue.csf)
    report["plans"] = plans.report
    report["plans"]["core"] = "the T1Gd segmentation"
    as_uint8 = lambda mask: mask.like(mask.array.astype(np.uint8))  # noqa: E731
    files = {"density.nii.gz": result.density, "ctv_standard.nii.gz": as_uint8(plans.standard),
             "ctv_model.nii.gz": as_uint8(plans.model)}
    if result.density_std is not None:
        files["density_std.nii.gz"] = result.density_std
    if result.density_map is not None:
        files["density_map.nii.gz"] = result.density_map
    if result.predictive_samples is not None:
        threshold = radiotherapy.DEFAULT_THRESHOLD
        plan, probability = radiotherapy.probabilistic_plan(result.predictive_samples, result.density, threshold)
        files["ctv_probabilistic.nii.gz"] = plan.like(plan.array.astype(np.uint8))
        files[f"probability_c>={threshold:g}.nii.gz"] = probability
        report["plans"]["probabilistic"] = {"threshold": threshold,
                                            "min_probability": radiotherapy.DEFAULT_MIN_PROBABILITY,
                                            "volume_ml": float(plan.array.sum() * plan.geometry.voxel_volume_ml)}
    for name, volume in files.items():
        write_volume(volume, out / name)
    background = tissue.background if tissue.background is not None else tissue.wm
    centre = np.argwhere(core.array).mean(axis=0)
    density_overview(result.density, background, centre, out / "overview.png",
                     title=f"{result.method}: density (slices through the T1Gd centre)")
    plan_overview(result.density, background, {"T1Gd core": (core, "magenta"),
                                               f"standard CTV ({margin_mm:g} mm)": (plans.standard, "cyan"),
                                               "model CTV (iso-volume)": (plans.model, "lime")},
                  centre, out / "plan.png", title="standard vs model plan")
    if result.samples is not None:
        posterior_corner(result.samples, result.sample_names, out / "posterior.png", truth=truth)
        report["marginals"] = marginal_histograms(result.samples, result.sample_names)
    write_json(report, out / "report.json")
    return report
