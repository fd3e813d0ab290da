"""Bayesian calibration with Transitional MCMC (thesis ch. 5) and the posterior-predictive density.

The likelihood (:mod:`..inference.likelihood`) compares simulated densities with the T1Gd and FLAIR segmentations
(and FET-PET) on the tissue maps' grid; :func:`..inference.tmcmc.sample` moves a population from the prior to the
posterior; 32 posterior draws simulated on the whole grid give the mean density (``density.nii.gz``), its
standard deviation and the probabilistic CTV. Details and measurements: ``docs/methods/tmcmc.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..personalization.settings import MethodSettings, setting

# The registry imports this module to list its settings: numpy, the sampler and the solver are imported in the
# functions that run.

NAME = "tmcmc"
LABEL = "TMCMC (Bayesian)"
SUMMARY = ("Bayesian calibration with Transitional MCMC (thesis ch. 5) on the tissue maps' grid: posterior "
           "intervals, mean density and its uncertainty; 5-30 min on 2 cores")
REQUIRED_INPUTS = ("t1gd", "flair")
OPTIONAL_INPUTS = ("t1", "pet", "wm", "gm", "csf", "recurrence")
VARIANTS = (("tmcmc", LABEL, {}),)
"""Named presets the Slicer panel offers: (key, label, settings)."""
SAMPLES_POSTERIOR = True

FAST_SAMPLES = 320
DEFAULT_SAMPLES = 2048


@dataclass(frozen=True)
class Settings(MethodSettings):
    """TMCMC's settings (defaults as in the thesis; the benchmark's choices are explained in the docs)."""

    samples: int = setting(DEFAULT_SAMPLES, "TMCMC population per stage", flag=True, minimum=32, maximum=100_000)
    fast: bool = setting(False, f"{FAST_SAMPLES} samples per stage instead of {DEFAULT_SAMPLES} (about 4x faster, "
                                "more Monte Carlo error)", flag=True)
    workers: int | None = setting(None, "local worker processes for the forward runs (default: all cores)",
                                  flag=True, minimum=1)
    dask_scheduler: Any = setting(None, "run the forward runs on a Dask cluster: a scheduler address "
                                        "(tcp://host:8786) or, from Python, a distributed.Client", flag=True)
    seed: int = setting(0, "random seed (results are reproducible)", flag=True, minimum=0)
    grid_mm: float | None = setting(None, "calibration grid spacing (default: the tissue grid; a coarser grid "
                                          "biases the posterior)", unit="mm", positive=True)
    roi_margin_mm: float = setting(15.0, "margin around the lesion's bounding box where the likelihood is "
                                         "evaluated", unit="mm", positive=True)
    step_tolerance: float = setting(0.15, "the solver's target maximum change of c per time step during "
                                          "sampling", positive=True)
    coarse_grid_mm: float | None = setting(None, "multi-fidelity: run the early tempering stages on this coarser "
                                                 "grid, then switch to the calibration grid (the posterior stays "
                                                 "the fine grid's)", unit="mm", positive=True)
    switch_beta: float = setting(1e-3, "multi-fidelity: tempering exponent at which the coarse stages hand over "
                                       "to the calibration grid", positive=True, maximum=0.5)
    delayed_acceptance: bool = setting(False, "multi-fidelity: screen the fine stages' moves on the coarse grid first "
                                              "(fewer fine runs; stalls when the coarse grid's posterior lies far "
                                              "from the fine one's)")
    mcmc_steps: int = setting(1, "Metropolis steps per sample and stage", minimum=1, maximum=100)
    predictive_draws: int = setting(32, "posterior draws simulated on the whole grid for the mean density, its "
                                        "standard deviation and the probabilistic plan", minimum=1, maximum=1000)
    ratio: float = setting(10.0, "Dw / Dg, white- to grey-matter diffusivity", positive=True)
    forward: str = setting("numerical", "forward model of the likelihood: the numerical solver or the trained neural "
                                        "surrogate (needs a CSF map; the posterior-predictive densities always come "
                                        "from the numerical solver)", flag=True, choices=("numerical", "surrogate"))
    surrogate_weights: str | None = setting(None, "surrogate weights file for forward = surrogate (default: the "
                                                  "shipped Resources/Surrogate/surrogate.pt)")

    def check(self) -> None:
        if self.fast and self.samples != DEFAULT_SAMPLES:
            raise InputError("give samples (--samples) or fast (--fast), not both")
        if self.surrogate_weights is not None and self.forward != "surrogate":
            raise InputError("surrogate_weights is for forward = surrogate")
        if self.coarse_grid_mm is not None and self.forward != "numerical":
            raise InputError("coarse_grid_mm (--coarse-grid-mm) needs the numerical forward model")
        if self.coarse_grid_mm is not None and self.grid_mm is not None and self.coarse_grid_mm <= self.grid_mm:
            raise InputError(f"coarse_grid_mm ({self.coarse_grid_mm} mm) must be coarser than grid_mm "
                             f"({self.grid_mm} mm)")

    @property
    def population(self) -> int:
        """Samples per stage."""
        return FAST_SAMPLES if self.fast else self.samples


def personalize(case, settings: Settings = Settings(), progress=None, cancel=None):
    """Calibrate the Fisher-Kolmogorov model to ``case`` with TMCMC; returns a Personalization with posterior
    intervals, the posterior-predictive mean density and its standard deviation.

    Parameters
    ----------
    case : Case
        T1Gd and FLAIR (and optional PET) on the grid of the patient's tissue maps, or of the T1 (its tissue maps
        are then segmented from it), or of the bundled atlas when the case has neither.
    settings : Settings
    progress : callable(fraction, message) or None
    cancel : threading.Event or None
        Set it to stop at the next stage (raises Cancelled).
    """
    import time

    from ..execution import make_executor
    from ..inference import posterior, tmcmc
    from ..inference.likelihood import CalibrationProblem, FidelityPair, Observation, build_prior
    from ..models.fisher_kolmogorov import StepSettings
    from ..personalization import Progress
    from .sampled import tissue_for

    report_progress = Progress(progress, cancel)
    started = time.perf_counter()
    tissue, tissue_report = tissue_for(case, Progress(report_progress.part(0.0, 0.05)))
    observation = Observation(case.t1gd, case.flair, case.pet)
    prior = build_prior(observation)
    steps = StepSettings(step_tolerance=settings.step_tolerance)
    problem = CalibrationProblem(tissue.wm, tissue.gm, observation, prior, ratio=settings.ratio,
                                 roi_margin_mm=settings.roi_margin_mm, grid_mm=settings.grid_mm, steps=steps,
                                 csf=tissue.csf, forward=settings.forward, surrogate_weights=settings.surrogate_weights)
    if settings.coarse_grid_mm is not None:
        coarse = CalibrationProblem(tissue.wm, tissue.gm, observation, prior, ratio=settings.ratio,
                                    roi_margin_mm=settings.roi_margin_mm, grid_mm=settings.coarse_grid_mm,
                                    steps=steps)
        function = FidelityPair(coarse, problem)
    else:
        coarse, function = None, problem
    # The surrogate's network already uses every core of one process: by default it runs inline.
    workers = settings.workers or (1 if settings.forward == "surrogate" else None)
    executor = make_executor(function, workers=workers, dask_scheduler=settings.dask_scheduler)
    if coarse is not None:
        fine_likelihood = FidelityPair.on(executor, FidelityPair.FINE)
        coarse_likelihood = FidelityPair.on(executor, FidelityPair.COARSE)
    else:
        fine_likelihood, coarse_likelihood = executor, None

    def on_stage(beta, stage, phase):
        report_progress(0.9 * sampling_fraction(beta, phase, coarse is not None, settings.switch_beta),
                        f"sampling: stage {stage}, {phase + ' grid, ' if coarse is not None else ''}beta {beta:.2g}")

    report_progress(0.0, "sampling the posterior")
    try:
        result = tmcmc.sample(fine_likelihood, prior, n_samples=settings.population, seed=settings.seed,
                              mcmc_steps=settings.mcmc_steps, coarse_log_likelihood=coarse_likelihood,
                              switch_beta=settings.switch_beta, delayed_acceptance=settings.delayed_acceptance,
                              progress=on_stage)
    except BaseException:  # Ctrl-C, SIGTERM, Cancel: stop the workers now, not after their current chunk
        executor.close(abort=True)
        raise
    executor.close()
    sampled = time.perf_counter()
    report_progress(0.9, "simulating posterior draws")
    predictive = posterior.posterior_predictive(tissue, result.samples, result.natural, result.map_index,
                                                prior.names, settings.predictive_draws, settings.ratio, settings.seed)
    report_progress(1.0, "done")
    finished = time.perf_counter()
    timings = {"sampling_s": sampled - started, "predictive_s": finished - sampled, "total_s": finished - started}
    run = {"forward": settings.forward, "executor": type(executor).__name__, "workers": executor.workers,
           "grid_mm": list(problem.roi.spacing_mm), "roi_shape": list(problem.roi.shape)}
    if coarse is not None:
        run.update(coarse_grid_mm=list(coarse.roi.spacing_mm), coarse_roi_shape=list(coarse.roi.shape))
    personalization = _result(case, tissue, result, prior, predictive, timings, run, settings)
    personalization.report["tissue"] = tissue_report
    return personalization


def sampling_fraction(beta: float, phase: str, multi_fidelity: bool, switch_beta: float) -> float:
    """Share of the sampling done, for the progress bar (and so for its time remaining): beta climbs from ~1e-8
    to 1 roughly evenly in log10. In a multi-fidelity run the coarse stages, which cost little, fill the first
    15 % and the fine ones, from ``switch_beta`` to 1, the rest."""
    import math

    position = lambda b, lo: min(1.0, max(0.0, math.log10(max(b, 1e-12) / lo) / -math.log10(lo)))  # noqa: E731
    if not multi_fidelity:
        return position(beta, 1e-8)
    if phase == "coarse":
        return 0.15 * min(1.0, max(0.0, math.log10(max(beta, 1e-12) / 1e-8) / math.log10(switch_beta / 1e-8)))
    return 0.15 + 0.85 * (position(beta, switch_beta) if phase == "fine" else 0.0)


def _result(case, tissue, result, prior, predictive, timings: dict, run: dict, settings: Settings):
    """The Personalization: parameters with intervals, the report, the mean / std / MAP densities."""
    from ..personalization.result import IDENTIFIABILITY_NOTE, SEED_NOTE
    from .sampled import from_posterior, summarised

    names, natural, parameters = summarised(prior.names, result.natural, result.map_index)
    report = {
        "method": NAME,
        "parameters": parameters,
        "identifiability": IDENTIFIABILITY_NOTE,
        "seed_convention": SEED_NOTE,
        "density_file": f"density.nii.gz = posterior-predictive mean over {len(predictive.draws)} posterior draws "
                        f"({predictive.distinct} distinct); density_map.nii.gz = the MAP parameters' density",
        "log_evidence": result.log_evidence,
        "forward_runs": result.evaluations + predictive.simulations,
        "forward_runs_by_grid": {"coarse": result.evaluations_by_grid["coarse"],
                                 "fine": result.evaluations_by_grid["fine"], "posterior_predictive":
                                 predictive.simulations},
        "stages": [{"phase": s.phase, "beta": s.beta, "acceptance": s.acceptance, "proposal_scale": s.proposal_scale,
                    "forward_runs": {"coarse": s.coarse_evaluations, "fine": s.fine_evaluations},
                    "seconds": s.seconds} for s in result.stages],
        "timings_s": timings,
        "settings": {**settings.as_dict(), "n_samples": settings.population, **run,
                     "prior": {n: [lo, hi] for n, lo, hi in zip(prior.names, prior.low, prior.high)}},
    }
    return from_posterior(NAME, case, tissue, names, natural, parameters, report, predictive,
                          margin_mm=settings.margin_mm, timings=timings)
