"""Learn-Morph-Infer (thesis ch. 7): register the patient to the atlas, a trained network reads the lesion and
predicts the growth parameters, (refine,) simulate, and take the density back to the patient.

The stages live in :mod:`..lmi`; details and measurements: ``docs/methods/lmi.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..personalization.settings import MethodSettings, setting

# The registry imports this module to list its settings: torch, the registration and the solver are imported in
# the functions that run.

NAME = "lmi"
LABEL = "Learn-Morph-Infer"
SUMMARY = ("Learn-Morph-Infer (thesis ch. 7): registers the T1 to the atlas, a trained network predicts the "
           "growth parameters, fitted to the masks on a coarse grid and simulated in tissue maps segmented from the "
           "T1; about half a minute (fully refined: minutes)")
REQUIRED_INPUTS = ("t1", "t1gd", "flair")
OPTIONAL_INPUTS = ("wm", "gm", "csf", "recurrence")
VARIANTS = (("lmi", "Learn-Morph-Infer (about half a minute)", {}),
            ("lmiRefine", "Learn-Morph-Infer + full refinement (minutes)", {"refine": True}),
            ("lmiAtlas", "Learn-Morph-Infer in the atlas, unfitted (fastest, least accurate)",
             {"anatomy": "atlas", "coarse_fit": "off"}),
            ("lmiMassEffect", "Learn-Morph-Infer, mass-effect model (the tumor pushes the brain; about a minute)",
             {"model": "mass-effect"}))
"""Named presets the Slicer panel offers: (key, label, settings)."""
SAMPLES_POSTERIOR = False

REFINE_EVALUATIONS = 300
REFINE_FINE_EVALUATIONS = 120
REFINE_POLISH_EVALUATIONS = 60
MIN_SIMPLEX_EVALUATIONS = 6
"""A Nelder-Mead stage needs its start and a simplex around it in the 5 parameters."""
GROWTH_MODELS = ("fisher-kolmogorov", "mass-effect")  # lmi.config's names; that module imports numpy at load
DEFAULT_GAMMA_PA = 5000.0
"""gamma the mass-effect model simulates with unless the user gives one: the middle of the trained range
(0-10,000 Pa); one time point's masks do not tell it (docs/methods/lmi_mass_effect.md)."""


@dataclass(frozen=True)
class Settings(MethodSettings):
    """Learn-Morph-Infer's settings; the refinement budgets count simulations."""

    refine: bool = setting(False, "refine the network's estimate by fitting the masks (Nelder-Mead on the 3 mm "
                                  "network grid, then at 1.5 mm; minutes in the patient's tissue)", flag=True)
    coarse_fit: str = setting("on", "without --refine: fit the masks on the 3 mm network grid only (the "
                                    "refinement's first stage, seconds) before simulating; off: simulate the "
                                    "estimate as predicted", flag=True, choices=("on", "off"))
    anatomy: str = setting("patient", "without --wm/--gm: simulate in tissue maps segmented from the T1 "
                                      "(patient), or in the atlas and warp the density back (atlas)", flag=True,
                           choices=("patient", "atlas"))
    fast: bool = setting(False, "the quickest path: the estimate as predicted, simulated in the atlas (as "
                                "--anatomy atlas --coarse-fit off; about 12 s)", flag=True)
    skull_stripped: str = setting("auto", "is the T1 skull-stripped? auto: decided from the image's foreground "
                                          "volume", flag=True, choices=("auto", "yes", "no"))
    refine_evaluations: int = setting(REFINE_EVALUATIONS, "simulations of the refinement on the 3 mm network grid",
                                      minimum=MIN_SIMPLEX_EVALUATIONS)
    refine_fine_evaluations: int = setting(REFINE_FINE_EVALUATIONS, "then on the 1.5 mm grid (0: skip)",
                                           zero_or_at_least=MIN_SIMPLEX_EVALUATIONS)
    refine_polish_evaluations: int = setting(REFINE_POLISH_EVALUATIONS, "then a polish there with a sharper "
                                                                        "objective (0: skip)",
                                             zero_or_at_least=MIN_SIMPLEX_EVALUATIONS)
    mu_from: str = setting("auto", "take mu1, mu2 from the shape regressor or the inverse network; auto: the "
                                   "network's with the patient's tissue maps and no fit, else the shape "
                                   "regressor's", choices=("auto", "shape", "network"))
    seed_from: str = setting("shape", "take the seed from the seed regressor (~2 mm off on the test set) or the "
                                      "inverse network (~3.6 mm)", choices=("shape", "network"))
    model: str = setting("fisher-kolmogorov", "the growth model: Fisher-Kolmogorov, or with mass effect (the tumor "
                                              "pushes the brain; also writes the displacement field and the "
                                              "deformed tissue)", flag=True, choices=GROWTH_MODELS)
    gamma: float = setting(DEFAULT_GAMMA_PA, "with --model mass-effect: the mass-effect parameter gamma", unit="Pa",
                           flag=True, minimum=0.0, maximum=10000.0)
    weights: Path | None = setting(None, "trained inverse network (default Resources/LMI/inverse_net.pt, with "
                                         "--model mass-effect Resources/LMI/mass_effect/inverse_net.pt)")
    shape_weights: Path | None = setting(None, "trained shape regressor (default shape_regressor.pt beside the "
                                               "default weights)")
    seed_weights: Path | None = setting(None, "trained seed regressor (default seed_regressor.pt beside the default "
                                              "weights)")

    def check(self) -> None:
        if self.fast and self.refine:
            raise InputError("give refine (--refine) or fast (--fast), not both")
        if self.shape_weights is not None and self.mu_from == "network":
            raise InputError("shape_weights is not read with mu_from 'network'")
        if self.seed_weights is not None and self.seed_from == "network":
            raise InputError("seed_weights is not read with seed_from 'network'")
        if self.model == "mass-effect" and self.anatomy_used == "atlas":
            raise InputError("model mass-effect (--model) runs in the patient's tissue: not with --fast or "
                             "--anatomy atlas")
        if self.model != "mass-effect" and self.gamma != DEFAULT_GAMMA_PA:
            raise InputError("gamma (--gamma) is the mass-effect model's parameter: give --model mass-effect")

    @property
    def gamma_pa(self) -> float | None:
        """gamma in Pa for the mass-effect model, None for Fisher-Kolmogorov."""
        return self.gamma if self.model == "mass-effect" else None

    @property
    def anatomy_used(self) -> str:
        """Where to simulate without given maps: ``anatomy``, or the atlas with ``fast``."""
        return "atlas" if self.fast else self.anatomy

    @property
    def fitted(self) -> bool:
        """Whether the estimate is fitted to the masks (the coarse fit, or the whole refinement)."""
        return self.refine or (self.coarse_fit == "on" and not self.fast)


def personalize(case, settings: Settings = Settings(), progress=None, cancel=None):
    """Personalize the Fisher-Kolmogorov or the mass-effect model to ``case`` with Learn-Morph-Infer.

    Parameters
    ----------
    case : Case
        The T1 (whole head or skull-stripped, any grid) with T1Gd and FLAIR on its grid; with the patient's WM /
        GM (/ CSF) maps the density is simulated in them instead of in the atlas.
    settings : Settings
    progress : callable(fraction, message) or None
    cancel : threading.Event or None
        Set it to stop at the next progress report (raises Cancelled).
    """
    from ..lmi import stages
    from ..lmi.estimators import choose_mu_source
    from ..lmi.grids import MASS_EFFECT_NEEDS_CSF
    from ..lmi.models import load_models
    from ..lmi.report import lmi_report
    from ..personalization import Personalization, Progress
    from ..personalization.anatomy import patient_tissue
    from ..personalization.result import IDENTIFIABILITY_NOTE, SEED_NOTE
    from ..stage_timer import StageTimer

    if settings.gamma_pa is not None and case.tissue is not None and case.tissue.csf is None:
        raise InputError(MASS_EFFECT_NEEDS_CSF)  # before the registration, not after
    progress = Progress(progress, cancel)
    timer = StageTimer()
    in_patient = case.tissue is not None or settings.anatomy_used == "patient"
    fitted = settings.fitted
    timer.start("registration")  # loading the models counts here: a missing file is found before registering
    models = load_models(settings.weights, settings.shape_weights, settings.seed_weights,
                         mu_from=choose_mu_source(settings.mu_from, in_patient, fitted),
                         seed_from=settings.seed_from, model=settings.model)
    progress(0.0, "registering the T1 to the atlas")
    registration = stages.register(
        case.t1, case.flair, skull_stripped={"auto": None, "yes": True, "no": False}[settings.skull_stripped],
        t1_name=case.name("t1"), progress=progress.part(0.0, 0.3))
    if case.tissue is None and settings.anatomy_used == "patient":
        timer.start("tissue_maps")
    tissue, tissue_report = patient_tissue(case, segment=settings.anatomy_used == "patient", registration=registration,
                                           progress=Progress(progress.part(0.3, 0.35)))
    timer.start("warp_to_atlas")
    progress(0.35, "warping the segmentations to the atlas")
    lesion = stages.warp_to_atlas(registration, case.t1gd, case.flair, models.config)
    timer.start("network")
    progress(0.4, "predicting the growth parameters")
    estimate = stages.estimate(models, lesion.network)
    timer.stop()
    grids = stages.fit_grids(lesion, models.config, registration, tissue, case.t1gd, case.flair, settings.gamma_pa)
    refinement = None
    if fitted:
        # The coarse fit alone is the refinement's first stage: on SRI24 with its segmented maps it lifted Dice
        # from 0.797 / 0.816 / 0.658 (the estimate as predicted) to 0.847 / 0.858 / 0.728 (docs/methods/lmi.md).
        timer.start("refinement")
        progress(0.45, "refining the fit" if settings.refine else "fitting the masks on the network grid")
        refinement = stages.refine(estimate, grids, models.config, evaluations=settings.refine_evaluations,
                                   fine_evaluations=settings.refine_fine_evaluations if settings.refine else 0,
                                   polish_evaluations=settings.refine_polish_evaluations if settings.refine else 0,
                                   progress=progress.part(0.45, 0.8, "refining the fit"))
    timer.start("simulation")
    progress(0.8, "simulating in the patient's tissue" if tissue is not None else "simulating in the atlas")
    simulated = stages.simulate(grids, estimate, refinement, progress=progress.part(0.8, 0.9, "simulating"))
    progress(0.9, "taking the density to the patient's grid")
    if tissue is None:
        timer.start("warp_to_patient")
    on_patient = stages.warp_back(simulated, grids, registration, case.t1, tissue)
    timer.stop()
    progress(1.0, "done")
    parameters, report = lmi_report(models, registration, estimate, refinement, grids, simulated, on_patient,
                                    timer.seconds, general_notes=(IDENTIFIABILITY_NOTE, SEED_NOTE))
    report["settings"] = settings.as_dict()
    report["tissue"] = tissue_report
    return Personalization.create(NAME, case, on_patient.tissue, on_patient.density, parameters, report,
                                  margin_mm=settings.margin_mm, timings=report["timings_s"],
                                  displacement=on_patient.displacement, deformed_tissue=on_patient.deformed_tissue)
