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
           "growth parameters, optionally refined; about a minute (refined: a few minutes)")
REQUIRED_INPUTS = ("t1", "t1gd", "flair")
OPTIONAL_INPUTS = ("wm", "gm", "csf", "recurrence")
VARIANTS = (("lmi", "Learn-Morph-Infer (fast)", {}),
            ("lmiRefine", "Learn-Morph-Infer + refinement", {"refine": True}))
"""Named presets the Slicer panel offers: (key, label, settings)."""
SAMPLES_POSTERIOR = False

REFINE_EVALUATIONS = 300
REFINE_FINE_EVALUATIONS = 120
REFINE_POLISH_EVALUATIONS = 60
MIN_SIMPLEX_EVALUATIONS = 6
"""A Nelder-Mead stage needs its start and a simplex around it in the 5 parameters."""


@dataclass(frozen=True)
class Settings(MethodSettings):
    """Learn-Morph-Infer's settings; the refinement budgets count simulations."""

    refine: bool = setting(False, "refine the network's estimate by fitting the masks (Nelder-Mead on the 3 mm "
                                  "network grid, then at 1.5 mm)", flag=True)
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
                                   "network's with the patient's tissue maps and no refinement, else the shape "
                                   "regressor's", choices=("auto", "shape", "network"))
    seed_from: str = setting("shape", "take the seed from the seed regressor (~2 mm off on the test set) or the "
                                      "inverse network (~3.6 mm)", choices=("shape", "network"))
    weights: Path | None = setting(None, "trained inverse network (default Resources/LMI/inverse_net.pt)")
    shape_weights: Path | None = setting(None, "trained shape regressor (default "
                                               "Resources/LMI/shape_regressor.pt)")
    seed_weights: Path | None = setting(None, "trained seed regressor (default Resources/LMI/seed_regressor.pt)")

    def check(self) -> None:
        if self.shape_weights is not None and self.mu_from == "network":
            raise InputError("shape_weights is not read with mu_from 'network'")
        if self.seed_weights is not None and self.seed_from == "network":
            raise InputError("seed_weights is not read with seed_from 'network'")


def personalize(case, settings: Settings = Settings(), progress=None, cancel=None):
    """Personalize the Fisher-Kolmogorov model to ``case`` with Learn-Morph-Infer.

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
    from ..lmi.pipeline import personalize_lmi
    from ..personalization import Personalization, Progress

    density, parameters, report, tissue = personalize_lmi(
        case.t1, case.t1gd, case.flair, names=(case.name("t1"), case.name("t1gd"), case.name("flair")),
        refine_fit=settings.refine, refine_evaluations=settings.refine_evaluations,
        refine_fine_evaluations=settings.refine_fine_evaluations,
        refine_polish_evaluations=settings.refine_polish_evaluations,
        skull_stripped={"auto": None, "yes": True, "no": False}[settings.skull_stripped],
        weights=settings.weights, mu_from=settings.mu_from, shape_weights=settings.shape_weights,
        seed_from=settings.seed_from, seed_weights=settings.seed_weights, patient_tissue=case.tissue,
        progress=Progress(progress, cancel))
    report["settings"] = settings.as_dict()
    return Personalization.create(NAME, case, tissue, density, parameters, report, margin_mm=settings.margin_mm,
                                  timings=report["timings_s"])
