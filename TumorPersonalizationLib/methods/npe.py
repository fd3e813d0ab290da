"""Sequential neural posterior estimation (thesis ch. 6): a mixture density network, conditioned on a 3D CNN
embedding of the lesion's label map, learns the posterior from simulations; a few rounds of simulations drawn
from the current posterior refine it for the patient.

Round 1 draws from the prior, or from the amortised network's posterior when its weights exist
(``Resources/NPE/npe.pt``, ``Scripts/npe_train.py``); later rounds from the previous round's posterior, until it
stops moving. The posterior-predictive density, its standard deviation, the MAP density and the probabilistic CTV
come from posterior draws exactly as TMCMC's. Details and measurements: ``docs/methods/npe.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..personalization.settings import MethodSettings, setting

# The registry imports this module to list its settings: numpy, torch, sbi and the solver are imported in the
# functions that run.

NAME = "npe"
LABEL = "NPE (neural posterior)"
SUMMARY = ("Sequential neural posterior estimation (thesis ch. 6) on the tissue maps' grid: a mixture density "
           "network learns the posterior from simulations in a few rounds; posterior intervals, mean density and "
           "its uncertainty")
REQUIRED_INPUTS = ("t1gd", "flair")
OPTIONAL_INPUTS = ("t1", "pet", "wm", "gm", "csf", "recurrence")
VARIANTS = (("npe", LABEL, {}),)
"""Named presets the Slicer panel offers: (key, label, settings)."""
SAMPLES_POSTERIOR = True

DEFAULT_SIMULATIONS = 375
DEFAULT_ROUNDS = 4
FAST_SIMULATIONS = 200
FAST_ROUNDS = 3


@dataclass(frozen=True)
class Settings(MethodSettings):
    """NPE's settings."""

    simulations: int = setting(DEFAULT_SIMULATIONS, "simulations per round", flag=True, minimum=20,
                               maximum=100_000)
    max_rounds: int = setting(DEFAULT_ROUNDS, "most rounds of simulation and training", minimum=1,
                              maximum=50)
    fast: bool = setting(False, f"{FAST_SIMULATIONS} simulations per round and at most {FAST_ROUNDS} rounds "
                                "(a wider posterior)", flag=True)
    workers: int | None = setting(None, "local worker processes for the forward runs (default: all cores)",
                                  flag=True, minimum=1)
    dask_scheduler: Any = setting(None, "run the forward runs on a Dask cluster: a scheduler address "
                                        "(tcp://host:8786) or, from Python, a distributed.Client", flag=True)
    seed: int = setting(0, "random seed (results are reproducible)", flag=True, minimum=0)
    weights: str | None = setting(None, "amortised first-round weights (default: Resources/NPE/npe.pt when it "
                                        "exists; 'none': round 1 from the prior)", flag=True)
    tolerance: float = setting(0.1, "stop when no posterior mean moves by more than this many standard deviations "
                                    "(and no standard deviation by more than this log-ratio) between rounds",
                               positive=True)
    config: str | None = setting(None, "NPE config file (observation crop, network, training) for rounds without "
                                       "amortised weights (default: Resources/NPE/config.json)")
    max_epochs: int | None = setting(None, "most training epochs per round (default: the config's)", minimum=1)
    posterior_samples: int = setting(2000, "posterior draws for the intervals and the stopping rule",
                                     minimum=100, maximum=1_000_000)
    roi_margin_mm: float = setting(15.0, "margin around the lesion's bounding box where simulations run",
                                   unit="mm", positive=True)
    grid_mm: float | None = setting(None, "simulation grid spacing (default: the tissue grid)", unit="mm",
                                    positive=True)
    step_tolerance: float = setting(0.15, "the solver's target maximum change of c per time step",
                                    positive=True)
    predictive_draws: int = setting(32, "posterior draws simulated on the whole grid for the mean density, its "
                                        "standard deviation and the probabilistic plan", minimum=1, maximum=1000)
    ratio: float = setting(10.0, "Dw / Dg, white- to grey-matter diffusivity", positive=True)

    def check(self) -> None:
        if self.fast and (self.simulations != DEFAULT_SIMULATIONS or self.max_rounds != DEFAULT_ROUNDS):
            raise InputError("give simulations / max_rounds (--simulations, --settings) or fast (--fast), "
                             "not both")
        if self.weights is not None and not self.weights.strip():
            raise InputError("weights (--weights) must be a file path or 'none'")

    @property
    def per_round(self) -> int:
        return FAST_SIMULATIONS if self.fast else self.simulations

    @property
    def rounds(self) -> int:
        return FAST_ROUNDS if self.fast else self.max_rounds


def amortised_weights(settings: Settings):
    """The amortised weights file to start from, or None (and why) when round 1 draws from the prior."""
    from pathlib import Path

    from ..npe.config import default_weights

    if settings.weights is not None and settings.weights.lower() == "none":
        return None, "skipped: weights 'none'"
    if settings.weights is not None:
        path = Path(settings.weights)
        if not path.is_file():
            raise InputError(f"weights (--weights) {path}: file not found")
        return path, f"used: {path}"
    path = default_weights()
    if path.is_file():
        return path, f"used: {path}"
    return None, f"skipped: no amortised weights at {path} (Scripts/npe_train.py makes them); round 1 draws from " \
                 "the prior"


def _network(settings: Settings, problem_pet: bool):
    """(config, amortised estimator or None, note): the amortised weights' config when they fit the case."""
    from ..npe.config import load_config
    from ..npe.estimator import load_weights
    from ..npe.parameters import GROWTH_NAMES, PET_NAMES

    path, note = amortised_weights(settings)
    if path is None:
        return load_config(settings.config), None, note
    estimator, saved = load_weights(path)
    wanted = list(GROWTH_NAMES + (PET_NAMES if problem_pet else ()))
    if saved["names"] != wanted:
        if settings.weights is not None:
            raise InputError(f"weights (--weights) {path}: trained for {saved['names']}, this case needs {wanted}")
        return load_config(settings.config), None, f"skipped: {path} infers {saved['names']}, this case needs " \
                                                   f"{wanted}; round 1 draws from the prior"
    return saved["config"], estimator, note


def personalize(case, settings: Settings = Settings(), progress=None, cancel=None):
    """Personalize the Fisher-Kolmogorov model to ``case`` with sequential NPE; returns a Personalization with
    posterior intervals, the posterior-predictive mean density and its standard deviation.

    Parameters
    ----------
    case : Case
        T1Gd and FLAIR (and optional PET) on the grid of the patient's tissue maps, or of the T1 (its tissue maps
        are then segmented from it), or of the bundled atlas when the case has neither.
    settings : Settings
    progress : callable(fraction, message) or None
    cancel : threading.Event or None
        Set it to stop between simulation batches or rounds (raises Cancelled).
    """
    import time

    import numpy as np

    from ..execution import make_executor
    from ..inference import posterior
    from ..inference.likelihood import Observation, build_prior
    from ..models.fisher_kolmogorov import StepSettings
    from ..npe.parameters import ridge_days
    from ..npe.rounds import run_rounds
    from ..npe.simulator import case_problem
    from ..personalization import Progress
    from .sampled import tissue_for

    report_progress = Progress(progress, cancel)
    started = time.perf_counter()
    tissue, tissue_report = tissue_for(case, Progress(report_progress.part(0.0, 0.05)))
    observation = Observation(case.t1gd, case.flair, case.pet)
    config, amortised, amortised_note = _network(settings, observation.pet is not None)
    prior = build_prior(observation)
    problem = case_problem(tissue, observation, prior, config, ratio=settings.ratio,
                           roi_margin_mm=settings.roi_margin_mm, grid_mm=settings.grid_mm,
                           steps=StepSettings(step_tolerance=settings.step_tolerance), seed=settings.seed)
    executor = make_executor(problem.simulator, workers=settings.workers, dask_scheduler=settings.dask_scheduler)
    # Batches of a few simulations per worker: Cancel is checked between them.
    batch = 4 * problem.simulator.BATCH * executor.workers

    def simulate(theta, fraction):
        parts = []
        for start in range(0, len(theta), batch):
            fraction(start / len(theta))
            parts.append(executor(theta[start:start + batch]))
        return np.concatenate(parts)

    report_progress(0.0, "neural posterior estimation")
    try:
        rounds = run_rounds(simulate, problem, config, simulations=settings.per_round, max_rounds=settings.rounds,
                            tolerance=settings.tolerance, posterior_samples=settings.posterior_samples,
                            seed=settings.seed, progress=report_progress.part(0.0, 0.9), amortised=amortised,
                            max_epochs=settings.max_epochs)
    except BaseException:  # Ctrl-C, SIGTERM, Cancel: stop the workers now, not after their current chunk
        executor.close(abort=True)
        raise
    executor.close()
    inferred = time.perf_counter()
    report_progress(0.9, "simulating posterior draws")
    mu = rounds.samples[:, :2] * problem.space.scale[:2]
    natural = problem.space.to_natural(rounds.samples, ridge_days(mu[:, 0], mu[:, 1], prior,
                                                                  np.random.default_rng(settings.seed)))
    predictive = posterior.posterior_predictive(tissue, rounds.samples, natural, rounds.map_index,
                                                problem.space.natural_names, settings.predictive_draws,
                                                settings.ratio, settings.seed)
    report_progress(1.0, "done")
    finished = time.perf_counter()
    timings = {"inference_s": inferred - started, "predictive_s": finished - inferred, "total_s": finished - started}
    run = {"executor": type(executor).__name__, "workers": executor.workers, "grid_mm": list(problem.roi.spacing_mm),
           "roi_shape": list(problem.roi.shape), "crop": dict(config["observation"]), "amortised": amortised_note}
    personalization = _result(case, tissue, rounds, problem, natural, predictive, timings, run, settings)
    personalization.report["tissue"] = tissue_report
    return personalization


def _result(case, tissue, rounds, problem, natural, predictive, timings: dict, run: dict, settings: Settings):
    """The Personalization: parameters with intervals, the report (rounds, simulations), the mean / std / MAP
    densities."""
    from ..personalization.result import IDENTIFIABILITY_NOTE, SEED_NOTE
    from .sampled import from_posterior, summarised

    names, natural, parameters = summarised(problem.space.natural_names, natural, rounds.map_index)
    space = problem.space
    report = {
        "method": NAME,
        "parameters": parameters,
        "identifiability": IDENTIFIABILITY_NOTE + (
            " NPE infers mu1 and mu2; each sample's T is drawn from TMCMC's prior given its mu1 and mu2."),
        "seed_convention": SEED_NOTE,
        "observation_model": "T1Gd and FLAIR: the density thresholded at u_c^T1Gd and u_c^FLAIR (thesis ch. 6, "
                             "no noise); PET: b u + N(0, sigma^2) clipped at 0",
        "density_file": f"density.nii.gz = posterior-predictive mean over {len(predictive.draws)} posterior draws "
                        f"({predictive.distinct} distinct); density_map.nii.gz = the density of the posterior "
                        f"sample with the highest posterior density",
        "forward_runs": rounds.simulations + predictive.simulations,
        "rounds": [r.as_dict() for r in rounds.records],
        "stopped": rounds.stopped,
        "timings_s": timings,
        "settings": {**settings.as_dict(), "simulations_per_round": settings.per_round,
                     "max_rounds_used": settings.rounds, **run,
                     "prior": {"scaled_names": list(space.names), "scale": space.scale.tolist(),
                               "low": problem.low.tolist(), "high": problem.high.tolist(),
                               "note": "uniform in mu1, mu2 (mm, -), the seed offset from the T1Gd centre of mass "
                                       "along the grid axes (mm) and the visibility levels; scaled = value / scale"}},
    }
    return from_posterior(NAME, case, tissue, names, natural, parameters, report, predictive,
                          margin_mm=settings.margin_mm, timings=timings)
