"""What every personalization method returns, and the one writer of its files.

A method returns a :class:`Personalization` (density on the patient's grid, optional uncertainty, parameters with
units and intervals, the radiotherapy plans, a JSON-ready report); :meth:`Personalization.write` turns it into
files:

    density.nii.gz        the density the method recommends (TMCMC: posterior-predictive mean)
    density_std.nii.gz    its voxel-wise standard deviation (methods that sample)
    density_map.nii.gz    the density of the maximum-a-posteriori parameters (methods that sample)
    report.json           parameters, intervals, timings, settings, plans (sampling methods: marginal histograms)
    overview.png          slices through the lesion with the density
    posterior.png         marginals and pairwise scatter of the posterior (methods that sample)
    ctv_*.nii.gz, plan.png, probability_c>=*.nii.gz    the radiotherapy plans
    tissue_wm/gm/csf.nii.gz   the tissue maps segmented from the T1, when the method made them (inspect them,
                          or pass them back with --wm/--gm/--csf)
    displacement.nii.gz   with the mass-effect model: the predicted tissue displacement as an ITK / Slicer
                          displacement-field transform (resampling convention, mm)
    deformed_wm/gm/csf.nii.gz  with the mass-effect model: the tissue maps as the tumor deformed them
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import radiotherapy
from ..errors import InputError
from ..files import write_json
from ..imaging.io import write_volume
from ..imaging.tissue import TissueMaps
from ..imaging.volume import Volume
from ..inference.posterior import UNITS
from .case import Case
from .quality import assess

TISSUE_FILES = {"wm": "tissue_wm.nii.gz", "gm": "tissue_gm.nii.gz", "csf": "tissue_csf.nii.gz"}
DEFORMED_TISSUE_FILES = {"wm": "deformed_wm.nii.gz", "gm": "deformed_gm.nii.gz", "csf": "deformed_csf.nii.gz"}
DISPLACEMENT_FILE = "displacement.nii.gz"
OUTPUT_NAMES = ("density.nii.gz", "density_std.nii.gz", "density_map.nii.gz", "report.json", "overview.png",
                "posterior.png", "plan.png", "ctv_standard.nii.gz", "ctv_model.nii.gz", "ctv_probabilistic.nii.gz",
                f"probability_c>={radiotherapy.DEFAULT_THRESHOLD:g}.nii.gz", *TISSUE_FILES.values(),
                DISPLACEMENT_FILE, *DEFORMED_TISSUE_FILES.values())

IDENTIFIABILITY_NOTE = (
    "From one imaging time point only mu1 = sqrt(Dw T) and mu2 = sqrt(rho T) (and the front speed "
    "v = 2 sqrt(Dw rho) = 2 mu1 mu2 / T only up to T) are identifiable; Dw, rho and T separately are not. "
    "Read their intervals as the prior's spread along that ridge.")
SEED_NOTE = ("T counts days from a seed of c = 1 within 1.5 mm and a 3 mm cosine taper (the solver's convention); "
             "a different seed size shifts T.")


@dataclass
class Personalization:
    """A method's result on the patient's grid; make it with :meth:`create`, which also makes the plans and checks
    the fit (``report["quality"]``).

    Attributes
    ----------
    method : str
        The registered method's name.
    density : Volume
        The tumor cell density in [0, 1] (float32) on the case's grid.
    parameters : dict
        name -> {"value" or "map"/"mean"/"median"/"ci95", "unit", ...}.
    report : dict
        JSON-ready: parameters, settings, timings per stage (``timings_s``), method-specific detail.
    tissue : TissueMaps
        The tissue maps on the case's grid that the plans and figures use (the patient's, or the atlas' warped there).
    case : Case
        The inputs.
    plans : radiotherapy.Plans
        Standard and personalized CTVs (``plans.report``: volumes in mL, coverage of the recurrence if given).
    density_std, density_map : Volume or None
        Posterior-predictive standard deviation and the MAP density (methods that sample).
    samples : (n, p) array or None
        Equally weighted posterior samples in natural units, columns ``sample_names``.
    predictive_samples : (k, ni, nj, nk) array or None
        Densities of k posterior draws (for the probabilistic plan).
    probabilistic : (Volume, Volume) or None
        The probabilistic CTV and P(c >= threshold) per voxel, from ``predictive_samples``.
    displacement : DisplacementField or None
        With the mass-effect model: the predicted tissue displacement on the case's grid.
    deformed_tissue : TissueMaps or None
        With the mass-effect model: the tissue maps deformed by the tumor, on the case's grid.
    """

    method: str
    density: Volume
    parameters: dict
    report: dict
    tissue: TissueMaps
    case: Case
    plans: radiotherapy.Plans
    density_std: Volume | None = None
    density_map: Volume | None = None
    samples: np.ndarray | None = None
    sample_names: tuple = ()
    predictive_samples: np.ndarray | None = None
    probabilistic: tuple | None = None
    timings: dict = field(default_factory=dict)
    displacement: object | None = None
    deformed_tissue: TissueMaps | None = None

    @classmethod
    def create(cls, method: str, case: Case, tissue: TissueMaps, density: Volume, parameters: dict, report: dict,
               *, margin_mm: float = radiotherapy.DEFAULT_MARGIN_MM, **optional) -> "Personalization":
        """The result with its plans: the standard CTV (T1Gd core + ``margin_mm``) and the iso-volume model CTV,
        both clipped to the brain of ``tissue`` and kept out of its CSF, and with ``predictive_samples`` the
        probabilistic CTV. ``optional``: the dataclass's optional fields."""
        brain = brain_mask_from_tissue(tissue)
        plans = radiotherapy.make_plans(density, case.t1gd, margin_mm=margin_mm, brain_mask=brain, csf=tissue.csf,
                                        recurrence=case.recurrence)
        plans.report["core"] = "the T1Gd segmentation"
        result = cls(method, density, parameters, dict(report), tissue, case, plans, **optional)
        if result.predictive_samples is not None:
            threshold = radiotherapy.DEFAULT_THRESHOLD
            plan, probability = radiotherapy.probabilistic_plan(result.predictive_samples, density, threshold)
            result.probabilistic = (plan, probability)
            plans.report["probabilistic"] = {"threshold": threshold,
                                             "min_probability": radiotherapy.DEFAULT_MIN_PROBABILITY,
                                             "volume_ml": float(plan.array.sum() * plan.geometry.voxel_volume_ml)}
        result.report["plans"] = plans.report
        result.report["quality"] = assess(density, case.t1gd, case.flair, parameters)
        return result

    @property
    def quality(self) -> dict:
        """Whether the density explains the segmentations (:func:`.quality.assess`): status "ok" or "poor fit"."""
        return self.report["quality"]

    def volumes(self) -> dict:
        """The result's volumes by output file name."""
        as_uint8 = lambda mask: mask.like(mask.array.astype(np.uint8))  # noqa: E731
        files = {"density.nii.gz": self.density, "ctv_standard.nii.gz": as_uint8(self.plans.standard),
                 "ctv_model.nii.gz": as_uint8(self.plans.model)}
        if self.density_std is not None:
            files["density_std.nii.gz"] = self.density_std
        if self.density_map is not None:
            files["density_map.nii.gz"] = self.density_map
        if self.probabilistic is not None:
            plan, probability = self.probabilistic
            files["ctv_probabilistic.nii.gz"] = as_uint8(plan)
            files[f"probability_c>={radiotherapy.DEFAULT_THRESHOLD:g}.nii.gz"] = probability
        if self.report.get("tissue", {}).get("source", "").startswith("segmented"):
            files.update({name: getattr(self.tissue, key) for key, name in TISSUE_FILES.items()
                          if getattr(self.tissue, key) is not None})
        if self.deformed_tissue is not None:
            files.update({name: getattr(self.deformed_tissue, key) for key, name in DEFORMED_TISSUE_FILES.items()})
        return files

    def write(self, out_dir, *, truth: dict | None = None) -> dict:
        """Write the files of the module docstring to ``out_dir``; returns the report.

        The files are written into a temporary folder beside ``out_dir`` and moved there only when all are
        complete, so an interrupted write leaves none of them (output files of an earlier run that this one does
        not make are removed, so the folder never mixes two runs). Refuses (InputError) an ``out_dir`` that is a
        file or would overwrite one of the case's input files. ``truth``: known parameter values to mark in
        ``posterior.png`` (synthetic cases).
        """
        out = Path(out_dir)
        check_output_folder(out, self.case)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            report = self._write_files(staging, truth)
            _publish(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return report

    def _write_files(self, out: Path, truth: dict | None) -> dict:
        from ..figures import density_overview, plan_overview, posterior_corner

        report = dict(self.report)
        for name, volume in self.volumes().items():
            write_volume(volume, out / name)
        if self.displacement is not None:
            self.displacement.write(out / DISPLACEMENT_FILE)
        background = self.tissue.background if self.tissue.background is not None else self.tissue.wm
        core = self.case.t1gd
        centre = np.argwhere(core.array).mean(axis=0)
        density_overview(self.density, background, centre, out / "overview.png",
                         title=f"{self.method}: density (slices through the T1Gd centre)")
        margin = self.plans.report["standard"]["margin_mm"]
        plan_overview(self.density, background, {"T1Gd core": (core, "magenta"),
                                                 f"standard CTV ({margin:g} mm)": (self.plans.standard, "cyan"),
                                                 "model CTV (iso-volume)": (self.plans.model, "lime")},
                      centre, out / "plan.png", title="standard vs model plan")
        if self.samples is not None:
            posterior_corner(self.samples, self.sample_names, out / "posterior.png", truth=truth)
            report["marginals"] = marginal_histograms(self.samples, self.sample_names)
        write_json(report, out / "report.json")
        return report


def _publish(staging: Path, out: Path) -> None:
    """Move the finished files from ``staging`` to ``out``: one rename when ``out`` is new, else file by file
    (each an atomic replace) after removing this product's outputs of an earlier run."""
    if not out.exists():
        os.rename(staging, out)
        return
    made = {p.name for p in staging.iterdir()}
    for name in OUTPUT_NAMES:
        if name not in made and (out / name).is_file():
            (out / name).unlink()
    for name in sorted(made):
        os.replace(staging / name, out / name)


def check_output_folder(out_dir, case: Case) -> None:
    """InputError when ``out_dir`` is an existing file, or when an output file in it would be one of the case's
    input files; called before a method runs and again before writing."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is an existing file; give a folder (it is created if needed)")
    inputs = {path.resolve(): case.name(key) for key, path in case.paths.items()}
    for name in OUTPUT_NAMES:
        target = (out / name).resolve()
        if target in inputs:
            raise InputError(f"output {out / name} is one of the input files ({inputs[target]}); "
                             f"choose another output folder")


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
