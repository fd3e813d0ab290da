"""The parameters and the report of one Learn-Morph-Infer personalization, from the stages' results."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..registration import Registration
from .grids import PATIENT_FIT_SPACING_MM
from .models import Models
from .parameters import FRONT_SPEED_MM_PER_DAY, from_time_independent
from .refinement import Refinement
from .stages import Estimate, FitGrids, OnPatient, Simulated

FRONT_SPEED_NOTE = "Dw, rho and T follow from mu1, mu2 at the fixed front speed v; any v gives the same density."


def lmi_parameters(simulated: Simulated, on_patient: OnPatient) -> dict:
    """name -> {"value", "unit"(, "note")}: mu1, mu2, Dw, rho, T at the fixed front speed v, the seed (x, y, z in
    the atlas' space) and the visibility levels of the best fit."""
    mu1, mu2, fit = simulated.mu1, simulated.mu2, simulated.fit
    dw, rho, days = (float(v) for v in from_time_independent(mu1, mu2))
    seed = on_patient.seed_atlas_ras
    return {"mu1": {"value": mu1, "unit": "mm"}, "mu2": {"value": mu2, "unit": "-"},
            "Dw": {"value": dw, "unit": "mm^2/day"}, "rho": {"value": rho, "unit": "1/day"},
            "T": {"value": days, "unit": "days"},
            "v": {"value": FRONT_SPEED_MM_PER_DAY, "unit": "mm/day", "note": "fixed (200 mm/year)"},
            **{axis: {"value": float(seed[n]), "unit": "mm (RAS, atlas space)"} for n, axis in enumerate("xyz")},
            "uc_T1Gd": {"value": fit.uc_t1gd, "unit": "density", "note": "best fit, not predicted"},
            "uc_FLAIR": {"value": fit.uc_flair, "unit": "density", "note": "best fit, not predicted"},
            **({} if simulated.gamma_pa is None else
               {"gamma": {"value": simulated.gamma_pa, "unit": "Pa", "note": "given (--gamma), not estimated"}})}


def lmi_report(models: Models, registration: Registration, estimate: Estimate, refinement: Refinement | None,
               grids: FitGrids, simulated: Simulated, on_patient: OnPatient, timings: dict,
               general_notes=()) -> tuple[dict, dict]:
    """(parameters, report): the report holds the parameters, where the density was simulated, the seed in the
    patient's space, the estimate (``network_estimate``), the refinement (None without one), the fit, the seconds
    per stage (``timings``, kept as the same dict), the registration's report, the weights read and the notes
    (the stages' own, then ``general_notes``, then how Dw, rho and T follow from mu1, mu2)."""
    parameters = lmi_parameters(simulated, on_patient)
    if grids.fine.in_patient_space:
        simulated_in = (f"the patient's tissue maps ({on_patient.tissue.source}) at {PATIENT_FIT_SPACING_MM:g} mm")
    else:
        simulated_in = "the atlas (1.5 mm), warped to the patient"
    report = {"method": "lmi", "parameters": parameters, "simulated_in": simulated_in,
              "seed_in_patient_ras_mm": np.round(on_patient.seed_patient_ras, 2).tolist(),
              "network_estimate": estimate.as_dict(),
              "refinement": None if refinement is None else refinement.as_dict(),
              "fit": {**asdict(simulated.fit), "grid": simulated.fit_grid, "objective_kind": simulated.objective_kind},
              "timings_s": timings, "total_s": round(sum(timings.values()), 3),
              "registration": registration.report, "weights": str(models.weights),
              "shape_weights": None if models.shape_weights is None else str(models.shape_weights),
              "seed_weights": None if models.seed_weights is None else str(models.seed_weights),
              "notes": [*models.notes, *estimate.notes, *general_notes, FRONT_SPEED_NOTE]}
    report["model"] = "fisher-kolmogorov" if simulated.mass_effect is None else "mass-effect"
    if simulated.mass_effect is not None:
        stats = simulated.mass_effect.stats
        report["mass_effect"] = {"gamma_pa": simulated.gamma_pa,
                                 "max_displacement_mm": round(float(stats["max_displacement_mm"]), 3),
                                 "elasticity_solves": stats["elasticity_solves"],
                                 "cg_iterations": stats["cg_iterations"]}
    return parameters, report
