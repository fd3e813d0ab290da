"""Command line: ``python -m TumorPersonalizationLib <command> ...``.

Exit codes: 0 success, 2 bad input (one line on stderr naming the input), 130 interrupted. Outputs are written
only after everything has been computed, each atomically, and never over an input file.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import Cancelled, InputError

REFINE_EVALUATIONS = 300  # lmi/refinement.DEFAULT_EVALUATIONS (not imported: the CLI starts without torch/scipy)
REFINE_FINE_EVALUATIONS = 120  # lmi/refinement.FINE_EVALUATIONS
REFINE_POLISH_EVALUATIONS = 60  # lmi/refinement.POLISH_EVALUATIONS


class ProgressBar:
    """A tqdm bar on stderr driven by fractions in [0, 1]; usable as a Lib progress callback."""

    def __init__(self, description: str, enabled: bool = True):
        from tqdm import tqdm

        self._message = description
        self._bar = tqdm(total=1000, desc=description, unit="‰", disable=not enabled, leave=False,
                         file=sys.stderr, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def __call__(self, fraction: float, message: str | None = None) -> None:
        if message is not None and message != self._message:
            self._message = message
            self._bar.set_description_str(message)
        target = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)

    def close(self) -> None:
        self._bar.close()


class JsonProgress:
    """Progress as JSON lines on stderr, ``{"progress": 0.42, "message": "..."}``, for programs that run the CLI.

    The Slicer module reads these lines from its subprocess. A line is printed only when the fraction has moved by
    at least 0.001, so a fast callback does not flood the pipe.
    """

    def __init__(self, message: str):
        self.message = message
        self._last = -1.0

    def __call__(self, fraction: float, message: str | None = None) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        changed = message is not None and message != self.message
        if changed:
            self.message = message
        if changed or fraction - self._last >= 0.001 or (fraction == 1.0 and self._last < 1.0):
            self._last = fraction
            print(json.dumps({"progress": round(fraction, 4), "message": self.message}), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _progress_for(args, message: str):
    """The progress callback a command's options ask for: JSON lines, a bar, or a silent bar (--quiet)."""
    if getattr(args, "progress_json", False):
        return JsonProgress(message)
    return ProgressBar(message, enabled=not args.quiet)


def _number(text: str, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be a {'number >= 0' if allow_zero else 'positive number'}, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, allow_zero=False)


def _nonnegative_float(text: str) -> float:
    return _number(text, allow_zero=True)


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _refuse_overwriting_inputs(outputs, inputs) -> None:
    resolved_inputs = {Path(p).resolve() for p in inputs if p is not None}
    for out in outputs:
        if out is not None and Path(out).resolve() in resolved_inputs:
            raise InputError(f"output {out} is one of the input files; choose another path")


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="simulate Fisher-Kolmogorov tumor growth in tissue maps",
                       description="Grow a tumor from a seed in WM/GM tissue maps (default: the bundled ICBM152 "
                                   "atlas) and write the cell density; positions are RAS millimetres.")
    p.add_argument("--dw", type=_positive_float, required=True, metavar="MM2_PER_DAY",
                   help="diffusivity in white matter, mm^2/day (grey matter: Dw / ratio)")
    p.add_argument("--rho", type=_positive_float, required=True, metavar="PER_DAY", help="proliferation rate, 1/day")
    p.add_argument("--days", type=_positive_float, required=True, help="time since seeding, days")
    seed = p.add_mutually_exclusive_group(required=True)
    seed.add_argument("--seed-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                      help="seed position in RAS mm (the coordinates Slicer and MNI space show)")
    seed.add_argument("--seed-voxel", type=float, nargs=3, metavar=("I", "J", "K"),
                      help="seed voxel index in NIfTI/ITK order (0-based)")
    _add_tissue_options(p)
    p.add_argument("--t1", type=Path, help="image to draw the overview on, same grid (default: atlas T1 or WM)")
    p.add_argument("--ratio", type=_positive_float, default=10.0, help="Dw / Dg (default 10)")
    p.add_argument("--out", type=Path, required=True, help="output density, e.g. density.nii.gz")
    p.add_argument("--png", type=Path, help="overview picture: three slices through the seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args) -> int:
    from .figures import density_overview
    from .forward import Seed, simulate
    from .imaging.io import SUPPORTED_SUFFIXES, write_volume
    from .imaging.tissue import load_tissue_maps

    if not any(args.out.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES):
        raise InputError(f"--out {args.out}: unsupported extension (use one of {', '.join(SUPPORTED_SUFFIXES)})")
    if args.png is not None and args.png.suffix.lower() != ".png":
        raise InputError(f"--png {args.png}: the file name must end in .png")
    _refuse_overwriting_inputs([args.out, args.png], [args.wm, args.gm, args.csf, args.t1])

    tissue = load_tissue_maps(args.wm, args.gm, args.csf, args.t1)
    seed = Seed(ras_mm=tuple(args.seed_mm) if args.seed_mm else None,
                voxel=tuple(args.seed_voxel) if args.seed_voxel else None)
    seed_index = seed.index_in(tissue)
    bar = ProgressBar("simulating", enabled=not args.quiet)
    started = time.perf_counter()
    try:
        density = simulate(tissue, args.dw, args.rho, args.days, seed, ratio=args.ratio, progress=bar)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started

    write_volume(density, args.out)
    ml = density.geometry.voxel_volume_ml
    summary = {
        "output": str(args.out),
        "tissue": tissue.source,
        "dw_mm2_per_day": args.dw, "rho_per_day": args.rho, "days": args.days, "ratio": args.ratio,
        "seed_ras_mm": [round(float(v), 2) for v in tissue.geometry.index_to_ras(seed_index)],
        "volume_ml_c>=0.25": round(float((density.array >= 0.25).sum() * ml), 2),
        "volume_ml_c>=0.6": round(float((density.array >= 0.6).sum() * ml), 2),
        "seconds": round(elapsed, 3),
    }
    if args.png is not None:
        background = tissue.background if tissue.background is not None else tissue.wm
        title = (f"Fisher-Kolmogorov  Dw={args.dw} mm²/day  ρ={args.rho} /day  T={args.days} days  "
                 f"Dw/Dg={args.ratio}  seed RAS {summary['seed_ras_mm']} mm")
        density_overview(density, background, seed_index, args.png, title=title)
        summary["png"] = str(args.png)
    print(json.dumps(summary, indent=2))
    return 0


def _add_plan(sub) -> None:
    from .radiotherapy import DEFAULT_CORE_LABELS, DEFAULT_MARGIN_MM

    p = sub.add_parser("plan", help="radiotherapy target volumes from a density and a tumor core",
                       description="Write the standard CTV (core + Euclidean margin) and a personalized CTV from the "
                                   "tumor cell density (iso-volume with the standard plan, or a density threshold), "
                                   "with volumes and, given a follow-up recurrence, its coverage.")
    p.add_argument("--density", type=Path, required=True, help="tumor cell density in [0, 1] (NIfTI/NRRD)")
    p.add_argument("--core", type=Path, required=True,
                   help="tumor core: a binary mask, or a label map (see --core-labels), on the density's grid")
    p.add_argument("--core-labels", type=int, nargs="+", default=list(DEFAULT_CORE_LABELS), metavar="L",
                   help="labels forming the core in a label map (default 1 3 4: BraTS necrosis + enhancing)")
    p.add_argument("--brain-mask", type=Path, help="brain mask; both plans are clipped to it")
    p.add_argument("--csf", type=Path, help="CSF probability map; voxels with CSF >= 0.5 are left out of both plans")
    p.add_argument("--margin-mm", type=_nonnegative_float, default=DEFAULT_MARGIN_MM,
                   help=f"standard-plan margin in mm (default {DEFAULT_MARGIN_MM:g})")
    p.add_argument("--threshold", type=_positive_float, metavar="C",
                   help="personalized plan = density >= C (default: iso-volume with the standard plan)")
    p.add_argument("--recurrence", type=Path, help="follow-up recurrence mask: report each plan's coverage")
    p.add_argument("--background", type=Path, help="image for plan.png (default: the density)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(run=_run_plan)


def _run_plan(args) -> int:
    from . import radiotherapy
    from .figures import plan_overview
    from .files import write_json
    from .imaging.io import read_volume, write_volume
    from .imaging.volume import require_same_grid

    outputs = {name: args.out / name for name in ("ctv_standard.nii.gz", "ctv_model.nii.gz", "plan.json", "plan.png")}
    inputs = [args.density, args.core, args.brain_mask, args.csf, args.recurrence, args.background]
    _refuse_overwriting_inputs(outputs.values(), inputs)

    density = read_volume(args.density, "--density")
    radiotherapy.check_density(density, f"--density {args.density}")
    core_image = read_volume(args.core, "--core")
    require_same_grid(density, f"--density {args.density}", core_image, f"--core {args.core}")
    core = radiotherapy.core_mask(core_image, tuple(args.core_labels), name=f"--core {args.core}")
    optional = {}
    for flag, path in (("--brain-mask", args.brain_mask), ("--csf", args.csf), ("--recurrence", args.recurrence),
                       ("--background", args.background)):
        if path is not None:
            optional[flag] = read_volume(path, flag)
            require_same_grid(density, f"--density {args.density}", optional[flag], f"{flag} {path}")
    brain, csf = optional.get("--brain-mask"), optional.get("--csf")
    recurrence = None
    if "--recurrence" in optional:
        recurrence = radiotherapy.core_mask(optional["--recurrence"], (1,), name=f"--recurrence {args.recurrence}")

    plans = radiotherapy.make_plans(density, core, margin_mm=args.margin_mm, brain_mask=brain, csf=csf,
                                    threshold=args.threshold, recurrence=recurrence)
    report = {"inputs": {flag.lstrip("-"): str(path) for flag, path in
                         (("--density", args.density), ("--core", args.core), ("--brain-mask", args.brain_mask),
                          ("--csf", args.csf), ("--recurrence", args.recurrence)) if path is not None},
              **plans.report}
    kind = plans.report["model"]["kind"]
    outlines = {"core": (core, "magenta"), f"standard CTV ({args.margin_mm:g} mm)": (plans.standard, "cyan"),
                f"model CTV ({kind})": (plans.model, "lime")}
    if recurrence is not None:
        outlines["recurrence"] = (recurrence, "red")

    centre = np.mean(np.argwhere(core.array), axis=0)
    background = optional.get("--background", density)
    write_volume(plans.standard.like(plans.standard.array.astype(np.uint8)), outputs["ctv_standard.nii.gz"])
    write_volume(plans.model.like(plans.model.array.astype(np.uint8)), outputs["ctv_model.nii.gz"])
    plan_overview(density, background.like(background.array.astype(np.float32)), outlines, centre,
                  outputs["plan.png"], title=f"standard vs {kind} plan, slices through the core's centre")
    write_json(report, outputs["plan.json"])
    print(json.dumps(report, indent=2))
    return 0


def _add_tissue_options(p) -> None:
    p.add_argument("--wm", type=Path, help="white-matter probability map (NIfTI/NRRD); default: bundled atlas "
                   "(personalize --method lmi: the patient's own maps on the --t1 grid, simulated in instead of "
                   "the atlas)")
    p.add_argument("--gm", type=Path, help="grey-matter probability map, same grid as --wm")
    p.add_argument("--csf", type=Path, help="CSF probability map, same grid (plans stay out of CSF)")


def _add_personalize(sub) -> None:
    p = sub.add_parser("personalize", help="personalize the growth model to a patient's segmentations",
                       description="Infer the tumor cell density (and model parameters) from T1Gd and FLAIR "
                                   "segmentations (and FET-PET), then write the density, its uncertainty, the "
                                   "radiotherapy plans, a report and figures to --out.")
    p.add_argument("--method", choices=["tmcmc", "lmi"], default="tmcmc",
                   help="tmcmc: Bayesian calibration with Transitional MCMC (thesis ch. 5), on the tissue maps' grid; "
                        "lmi: Learn-Morph-Infer (thesis ch. 7): registers --t1 to the atlas, about a minute")
    p.add_argument("--t1gd", type=Path, required=True,
                   help="T1Gd tumor segmentation (binary; grid of --t1 for lmi, of the tissue maps for tmcmc)")
    p.add_argument("--flair", type=Path, required=True, help="FLAIR tumor segmentation (binary, contains T1Gd)")
    p.add_argument("--pet", type=Path, help="FET-PET uptake image (non-negative), same grid (tmcmc)")
    lmi = p.add_argument_group("Learn-Morph-Infer (--method lmi)")
    lmi.add_argument("--t1", type=Path, help="the patient's T1 or T1Gd image (whole-head or skull-stripped)")
    lmi.add_argument("--refine", action="store_true",
                     help="refine the network's estimate with a short Nelder-Mead search (10-40 s)")
    lmi.add_argument("--refine-evaluations", type=int, default=REFINE_EVALUATIONS,
                     help=f"simulations allowed in --refine on the 3 mm network grid (default {REFINE_EVALUATIONS})")
    lmi.add_argument("--refine-fine-evaluations", type=int, default=REFINE_FINE_EVALUATIONS,
                     help=f"then on the atlas' 1.5 mm grid (default {REFINE_FINE_EVALUATIONS}; 0: skip)")
    lmi.add_argument("--refine-polish-evaluations", type=int, default=REFINE_POLISH_EVALUATIONS,
                     help="then a polish there with a sharper objective "
                          f"(default {REFINE_POLISH_EVALUATIONS}; 0: skip)")
    lmi.add_argument("--skull-stripped", choices=["auto", "yes", "no"], default="auto",
                     help="is --t1 skull-stripped? (auto: decided from the image's foreground volume)")
    lmi.add_argument("--weights", type=Path, help="trained network (default Resources/LMI/inverse_net.pt)")
    lmi.add_argument("--mu-from", choices=["auto", "shape", "network"], default="auto",
                     help="take mu1, mu2 from the shape regressor or the inverse network (auto, the default: the "
                          "network's with --wm/--gm and no --refine, where they fit better; the shape regressor's "
                          "otherwise)")
    lmi.add_argument("--shape-weights", type=Path,
                     help="trained shape regressor (default Resources/LMI/shape_regressor.pt)")
    lmi.add_argument("--seed-from", choices=["shape", "network"], default="shape",
                     help="take the seed from the seed regressor (default; ~2 mm off on the test set) or the "
                          "inverse network (~3.6 mm)")
    lmi.add_argument("--seed-weights", type=Path,
                     help="trained seed regressor (default Resources/LMI/seed_regressor.pt)")
    _add_tissue_options(p)
    p.add_argument("--ratio", type=_positive_float, default=10.0, help="Dw / Dg (default 10)")
    p.add_argument("--samples", type=int, default=2048, help="TMCMC samples per stage (default 2048)")
    p.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    p.add_argument("--dask-scheduler", metavar="ADDR", help="run forward simulations on a Dask cluster")
    p.add_argument("--grid-mm", type=_positive_float, help="calibration grid spacing (default: the tissue grid)")
    p.add_argument("--fast", action="store_true",
                   help=f"{FAST_SAMPLES} samples per stage instead of 2048 (about 4x faster, more Monte Carlo error)")
    p.add_argument("--margin-mm", type=_nonnegative_float, default=15.0, help="standard-plan margin (mm)")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed >= 0 (results are reproducible)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress-json", action="store_true",
                   help='progress as JSON lines on stderr, {"progress": 0.42, "message": "..."} '
                        '(for the Slicer module)')
    p.set_defaults(run=_run_personalize,
                   option_defaults={name: p.get_default(name) for name in _TMCMC_ONLY + _LMI_ONLY})


FAST_SAMPLES = 320


# Options that only one method reads: given with the other method, they are refused rather than ignored.
_TMCMC_ONLY = ("samples", "fast", "workers", "dask_scheduler", "grid_mm", "ratio", "pet")
_LMI_ONLY = ("t1", "refine", "refine_evaluations", "refine_fine_evaluations", "refine_polish_evaluations",
             "skull_stripped", "weights", "mu_from", "shape_weights", "seed_from", "seed_weights")


def _refuse_options_of_other_method(args) -> None:
    other = _TMCMC_ONLY if args.method == "lmi" else _LMI_ONLY
    for name in other:
        if getattr(args, name) != args.option_defaults[name]:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} is not used by --method {args.method} "
                             f"(it belongs to --method {'tmcmc' if args.method == 'lmi' else 'lmi'})")


def _run_personalize_lmi(args) -> int:
    from .imaging.io import read_volume
    from .lmi.pipeline import personalize_lmi
    from .personalize import OUTPUT_NAMES, write_outputs

    if args.t1 is None:
        raise InputError("--method lmi needs --t1 (the patient's T1 image, to register to the atlas)")
    if args.refine_evaluations < 6:
        raise InputError(f"--refine-evaluations must be at least 6, got {args.refine_evaluations}")
    for flag in ("--refine-fine-evaluations", "--refine-polish-evaluations"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value != 0 and value < 6:  # 6: the start and its simplex
            raise InputError(f"{flag} must be 0 (skip) or at least 6, got {value}")
    if args.shape_weights is not None and args.mu_from == "network":
        raise InputError("--shape-weights is not read with --mu-from network")
    if args.seed_weights is not None and args.seed_from == "network":
        raise InputError("--seed-weights is not read with --seed-from network")
    _refuse_overwriting_inputs([args.out / name for name in OUTPUT_NAMES],
                               [args.t1, args.t1gd, args.flair, args.wm, args.gm, args.csf])
    t1 = read_volume(args.t1, "--t1")
    t1gd, flair = read_volume(args.t1gd, "--t1gd"), read_volume(args.flair, "--flair")
    patient_tissue = None
    if args.wm is not None or args.gm is not None or args.csf is not None:
        from .imaging.tissue import load_tissue_maps

        patient_tissue = load_tissue_maps(args.wm, args.gm, args.csf)
    bar = _progress_for(args, "personalizing (lmi)")
    try:
        result, tissue, observation = personalize_lmi(
            t1, t1gd, flair, names=(f"--t1 {args.t1}", f"--t1gd {args.t1gd}", f"--flair {args.flair}"),
            refine_fit=args.refine, refine_evaluations=args.refine_evaluations,
            refine_fine_evaluations=args.refine_fine_evaluations,
            refine_polish_evaluations=args.refine_polish_evaluations,
            skull_stripped={"auto": None, "yes": True, "no": False}[args.skull_stripped], weights=args.weights,
            mu_from=args.mu_from, shape_weights=args.shape_weights, seed_from=args.seed_from,
            seed_weights=args.seed_weights, patient_tissue=patient_tissue, progress=bar)
    finally:
        bar.close()
    report = write_outputs(result, args.out, tissue, observation, margin_mm=args.margin_mm)
    parameters = {k: v["value"] for k, v in report["parameters"].items()}
    print(json.dumps({"out": str(args.out), "parameters": parameters, "timings_s": report["timings_s"]}, indent=2))
    return 0


def _run_personalize(args) -> int:
    _refuse_options_of_other_method(args)
    if args.method == "lmi":
        return _run_personalize_lmi(args)
    from .imaging.io import read_volume
    from .imaging.tissue import load_tissue_maps
    from .inference.likelihood import Observation
    from .personalize import OUTPUT_NAMES, personalize_tmcmc, write_outputs

    _refuse_overwriting_inputs([args.out / name for name in OUTPUT_NAMES],
                               [args.t1gd, args.flair, args.pet, args.wm, args.gm, args.csf])
    if args.samples < 32:
        raise InputError(f"--samples must be at least 32, got {args.samples}")
    tissue = load_tissue_maps(args.wm, args.gm, args.csf)
    observation = Observation.from_volumes(
        read_volume(args.t1gd, "--t1gd"), read_volume(args.flair, "--flair"),
        read_volume(args.pet, "--pet") if args.pet is not None else None, tissue.geometry,
        names=(f"--t1gd {args.t1gd}", f"--flair {args.flair}", f"--pet {args.pet}"))
    bar = _progress_for(args, f"personalizing ({args.method})")
    try:
        result = personalize_tmcmc(tissue, observation, n_samples=FAST_SAMPLES if args.fast else args.samples,
                                   seed=args.seed, workers=args.workers, dask_scheduler=args.dask_scheduler,
                                   grid_mm=args.grid_mm, ratio=args.ratio, progress=bar)
    finally:
        bar.close()
    report = write_outputs(result, args.out, tissue, observation, margin_mm=args.margin_mm)
    parameters = {k: {"map": round(v["map"], 4), "ci95": [round(c, 4) for c in v["ci95"]]}
                  for k, v in report["parameters"].items()}
    print(json.dumps({"out": str(args.out), "parameters": parameters, "timings_s": report["timings_s"],
                      "forward_runs": report["forward_runs"]}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m TumorPersonalizationLib",
                                     description="Personalized glioma growth models (TumorPersonalization).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_simulate(sub)
    _add_plan(sub)
    _add_personalize(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
