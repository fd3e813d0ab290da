"""Command line: ``python -m TumorPersonalizationLib <command> ...``.

Exit codes: 0 success, 2 bad input (one line on stderr naming the input), 3 results written but the fit is poor
(``personalize``: the density does not explain the segmentations; warnings on stderr), 130 interrupted. Outputs
are written only after everything has been computed, together, and never over an input file.
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
    p.add_argument("--solver", choices=("numerical", "surrogate"), default="numerical",
                   help="numerical (default) or the trained neural surrogate (needs --csf with --wm/--gm; "
                        "zero density outside its 128 mm cube around the seed)")
    p.add_argument("--surrogate-weights", type=Path, metavar="PT",
                   help="surrogate weights (default: the shipped Resources/Surrogate/surrogate.pt)")
    _add_mass_effect_options(p)
    p.add_argument("--out", type=Path, required=True, help="output density, e.g. density.nii.gz")
    p.add_argument("--png", type=Path, help="overview picture: three slices through the seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_simulate)


def _add_mass_effect_options(p) -> None:
    group = p.add_argument_group("mass effect (--model mass-effect; docs/methods/mass_effect.md)")
    group.add_argument("--model", choices=("fisher-kolmogorov", "mass-effect"), default="fisher-kolmogorov",
                       help="growth model (default fisher-kolmogorov); mass-effect also deforms the brain "
                            "(needs --csf with --wm/--gm)")
    group.add_argument("--gamma", type=float, metavar="PA",
                       help="mass-effect parameter gamma in Pa (0 = Fisher-Kolmogorov; the accepted range is in "
                            "the docs)")
    group.add_argument("--material", action="append", default=[], metavar="TISSUE=E,NU",
                       help="Young's modulus (Pa) and Poisson's ratio of wm, gm, csf or tumor, e.g. csf=100,0.1 "
                            "(repeatable; defaults from Subramanian et al. 2019)")
    group.add_argument("--displacement-out", type=Path, metavar="FILE",
                       help="displacement field (3-component vector image, mm, ITK/Slicer displacement-field "
                            "convention: resampling a healthy image through it shows the shift)")
    group.add_argument("--tissue-out", type=Path, metavar="DIR", help="deformed wm, gm, csf maps (.nii.gz) here")


def _parse_materials(texts) -> dict:
    """{tissue: Material} from --material TISSUE=E,NU values; InputError naming a malformed one."""
    from .models.mass_effect import Material

    materials = {}
    for text in texts:
        name, _, values = text.partition("=")
        parts = values.split(",")
        try:
            young, poisson = (float(v) for v in parts)
        except ValueError:
            raise InputError(f"--material {text}: expected TISSUE=E,NU (Pa, dimensionless), "
                             f"e.g. csf=100,0.1") from None
        materials[name.strip().lower()] = Material(young, poisson)
    return materials


def _run_simulate(args) -> int:
    from .figures import density_overview
    from .forward import Seed, simulate
    from .imaging.io import SUPPORTED_SUFFIXES, write_volume
    from .imaging.tissue import load_tissue_maps

    if not any(args.out.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES):
        raise InputError(f"--out {args.out}: unsupported extension (use one of {', '.join(SUPPORTED_SUFFIXES)})")
    if args.png is not None and args.png.suffix.lower() != ".png":
        raise InputError(f"--png {args.png}: the file name must end in .png")
    mass_effect = _check_mass_effect_args(args)
    tissue_outputs = ([args.tissue_out / f"{name}.nii.gz" for name in ("wm", "gm", "csf")]
                      if args.tissue_out is not None else [])
    _refuse_overwriting_inputs([args.out, args.png, args.displacement_out, *tissue_outputs],
                               [args.wm, args.gm, args.csf, args.t1])

    tissue = load_tissue_maps(args.wm, args.gm, args.csf, args.t1)
    seed = Seed(ras_mm=tuple(args.seed_mm) if args.seed_mm else None,
                voxel=tuple(args.seed_voxel) if args.seed_voxel else None)
    seed_index = seed.index_in(tissue)
    if args.surrogate_weights is not None and args.solver != "surrogate":
        raise InputError("--surrogate-weights is for --solver surrogate")
    started = time.perf_counter()
    if args.solver == "surrogate":
        from .surrogate.model import load_surrogate, simulate as surrogate_simulate

        density = surrogate_simulate(tissue, args.dw, args.rho, args.days, seed, ratio=args.ratio,
                                     surrogate=load_surrogate(args.surrogate_weights),
                                     warn=lambda text: print(f"warning: {text}", file=sys.stderr))
    else:
        bar = ProgressBar("simulating", enabled=not args.quiet)
        try:
            if mass_effect is not None:
                from .forward import simulate_mass_effect

                deformed = simulate_mass_effect(tissue, args.dw, args.rho, args.days, seed, ratio=args.ratio,
                                                progress=bar, **mass_effect)
                density = deformed.density
            else:
                density = simulate(tissue, args.dw, args.rho, args.days, seed, ratio=args.ratio, progress=bar)
        finally:
            bar.close()
    elapsed = time.perf_counter() - started

    write_volume(density, args.out)
    if mass_effect is not None:
        _write_mass_effect_outputs(args, deformed, tissue_outputs)
    ml = density.geometry.voxel_volume_ml
    summary = {
        "output": str(args.out),
        "tissue": tissue.source,
        "solver": args.solver,
        "dw_mm2_per_day": args.dw, "rho_per_day": args.rho, "days": args.days, "ratio": args.ratio,
        "seed_ras_mm": [round(float(v), 2) for v in tissue.geometry.index_to_ras(seed_index)],
        "volume_ml_c>=0.25": round(float((density.array >= 0.25).sum() * ml), 2),
        "volume_ml_c>=0.6": round(float((density.array >= 0.6).sum() * ml), 2),
        "seconds": round(elapsed, 3),
    }
    if mass_effect is not None:
        summary.update(_mass_effect_summary(args, deformed, mass_effect))
    if args.png is not None:
        background = tissue.background if tissue.background is not None else tissue.wm
        model = "Fisher-Kolmogorov (surrogate)" if args.solver == "surrogate" else "Fisher-Kolmogorov"
        if mass_effect is not None:
            model = f"mass effect (γ={mass_effect['gamma_pa']:g} Pa)"
        title = (f"{model}  Dw={args.dw} mm²/day  ρ={args.rho} /day  T={args.days} days  "
                 f"Dw/Dg={args.ratio}  seed RAS {summary['seed_ras_mm']} mm")
        density_overview(density, background, seed_index, args.png, title=title)
        summary["png"] = str(args.png)
    print(json.dumps(summary, indent=2))
    return 0


def _check_mass_effect_args(args) -> dict | None:
    """The mass-effect keyword arguments of forward.simulate_mass_effect, or None for Fisher-Kolmogorov; flags of
    the other model are refused, before any file is read."""
    from .imaging.io import SUPPORTED_SUFFIXES
    from .models.mass_effect import check_gamma, materials_with

    given = [flag for flag, value in (("--gamma", args.gamma), ("--material", args.material),
                                      ("--displacement-out", args.displacement_out),
                                      ("--tissue-out", args.tissue_out)) if value]
    if args.model != "mass-effect":
        if given:
            raise InputError(f"{given[0]} is for --model mass-effect")
        return None
    if args.solver != "numerical":
        raise InputError("--model mass-effect runs with --solver numerical (the surrogate learned "
                         "Fisher-Kolmogorov)")
    if args.gamma is None:
        raise InputError("--model mass-effect needs --gamma PA (the mass-effect parameter in Pa)")
    if args.wm is not None and args.csf is None:
        raise InputError("--model mass-effect needs --csf with --wm and --gm: without CSF the ventricles and "
                         "sulci would be rigid")
    out = args.displacement_out
    if out is not None and not any(out.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES):
        raise InputError(f"--displacement-out {out}: unsupported extension (use one of "
                         f"{', '.join(SUPPORTED_SUFFIXES)})")
    if args.tissue_out is not None and args.tissue_out.exists() and not args.tissue_out.is_dir():
        raise InputError(f"--tissue-out {args.tissue_out} is an existing file; give a folder")
    return {"gamma_pa": check_gamma(args.gamma), "materials": materials_with(_parse_materials(args.material))}


def _write_mass_effect_outputs(args, deformed, tissue_outputs) -> None:
    from .imaging.io import write_volume

    if args.displacement_out is not None:
        deformed.displacement.write(args.displacement_out)
    for path, volume in zip(tissue_outputs, (deformed.tissue.wm, deformed.tissue.gm, deformed.tissue.csf)):
        write_volume(volume, path)


def _mass_effect_summary(args, deformed, mass_effect) -> dict:
    materials = {name: {"young_pa": m.young_pa, "poisson": m.poisson,
                        "lambda_pa": round(m.lame_pa[0], 2), "mu_pa": round(m.lame_pa[1], 2)}
                 for name, m in mass_effect["materials"].items()}
    stats = deformed.stats
    summary = {"model": "mass-effect", "gamma_pa": mass_effect["gamma_pa"], "materials": materials,
               "max_displacement_mm": round(stats["max_displacement_mm"], 3),
               "elasticity": {"solves": stats["elasticity_solves"], "cg_iterations": stats["cg_iterations"],
                              "seconds": stats["elasticity_seconds"]}}
    if args.displacement_out is not None:
        summary["displacement_out"] = str(args.displacement_out)
    if args.tissue_out is not None:
        summary["tissue_out"] = str(args.tissue_out)
    return summary


def _add_plan(sub) -> None:
    from .plan_defaults import DEFAULT_CORE_LABELS, DEFAULT_MARGIN_MM

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

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is an existing file; give a folder (it is created if needed)")
    outputs = {name: args.out / name for name in ("ctv_standard.nii.gz", "ctv_model.nii.gz", "plan.json", "plan.png")}
    inputs = [args.density, args.core, args.brain_mask, args.csf, args.recurrence, args.background]
    _refuse_overwriting_inputs(outputs.values(), inputs)

    density = read_volume(args.density, "--density")
    radiotherapy.check_density(density, f"--density {args.density}")
    if not density.array.any():
        raise InputError(f"--density {args.density}: the density is zero everywhere; there is no tumor to plan for")
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
    p.add_argument("--wm", type=Path, help="white-matter probability map (NIfTI/NRRD); default: bundled atlas")
    p.add_argument("--gm", type=Path, help="grey-matter probability map, same grid as --wm")
    p.add_argument("--csf", type=Path, help="CSF probability map, same grid (plans stay out of CSF)")


_INPUT_HELP = {
    "t1": "the patient's T1 or T1Gd image (whole head or skull-stripped)",
    "t1gd": "T1Gd tumor segmentation (binary)",
    "flair": "FLAIR tumor segmentation (binary, contains T1Gd)",
    "pet": "FET-PET uptake image (non-negative), same grid",
    "wm": "the patient's white-matter probability map, same grid (default: the bundled atlas)",
    "gm": "grey-matter probability map, same grid as --wm",
    "csf": "CSF probability map, same grid (plans stay out of CSF)",
    "recurrence": "follow-up (recurrence) segmentation, same grid: the plans' coverage of it is reported",
}


def _method_flags() -> dict:
    """Every Settings field shown as a flag, by name: (field description, the methods that have it)."""
    from . import methods

    flags = {}
    for name in methods.names():
        for field in methods.get(name).Settings.describe():
            if field["flag"]:
                flags.setdefault(field["name"], (field, []))[1].append(name)
    return flags


def _add_setting_flag(group, field: dict, owners: list, all_methods: tuple) -> None:
    unit = f" ({field['unit']})" if field["unit"] else ""
    where = "" if len(owners) == len(all_methods) else f" [{', '.join(owners)}]"
    default = "" if field["default"] in (None, False) else f"; default {field['default']}"
    text = f"{field['help']}{unit}{default}{where}"
    if field["type"] == "bool":
        group.add_argument(field["flag"], action="store_true", default=None, help=text)
        return
    kind = {"int": int, "float": float}.get(field["type"].split(" ")[0], str)
    group.add_argument(field["flag"], type=kind, choices=field["choices"], default=None, help=text,
                       metavar=None if field["choices"] else field["name"].upper())


def _add_personalize(sub) -> None:
    from . import methods
    from .personalization import INPUTS

    names = methods.names()
    summaries = "; ".join(f"{n}: {methods.get(n).SUMMARY}" for n in names)
    p = sub.add_parser("personalize", help="personalize the growth model to a patient's segmentations",
                       description="Infer the tumor cell density (and model parameters) from T1Gd and FLAIR "
                                   "segmentations (and FET-PET), then write the density, its uncertainty, the "
                                   "radiotherapy plans, a report and figures to --out. Every setting of a method, "
                                   "with its default and unit: `methods`.")
    p.add_argument("--method", choices=names, default=names[0], help=f"default {names[0]}. {summaries}")
    for key in INPUTS:
        p.add_argument(f"--{key}", type=Path, help=_INPUT_HELP[key])
    group = p.add_argument_group("method settings (those of other methods are refused)")
    for field, owners in _method_flags().values():
        _add_setting_flag(group, field, owners, names)
    p.add_argument("--settings", type=Path, metavar="JSON",
                   help="a JSON object of the method's settings (every field `methods` lists); flags override it")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress-json", action="store_true",
                   help='progress as JSON lines on stderr, {"progress": 0.42, "message": "..."} '
                        '(for the Slicer module)')
    p.set_defaults(run=_run_personalize)


def _settings_from_args(args, method: str):
    """The method's Settings from ``--settings`` and the flags; flags of other methods are refused."""
    from . import methods
    from .personalization.settings import read_settings_file

    values = read_settings_file(args.settings) if args.settings is not None else {}
    own = {f["name"] for f in methods.get(method).Settings.describe()}
    for name, (field, owners) in _method_flags().items():
        value = getattr(args, name)
        if value is None:
            continue
        if name not in own:
            raise InputError(f"{field['flag']} is not used by --method {method} "
                             f"(it belongs to --method {', '.join(owners)})")
        values[name] = value
    source = f"--settings {args.settings}" if args.settings is not None else "settings"
    return methods.get(method).Settings.from_mapping(values, source=source)


def _case_from_args(args, method: str):
    """The Case from the input flags; inputs the method does not read are refused, missing ones named."""
    from . import methods
    from .personalization import Case
    from .personalization import INPUTS

    paths = {key: getattr(args, key) for key in INPUTS if getattr(args, key) is not None}
    methods.check_inputs(method, paths, as_flags=True)  # before any file is read
    return Case.from_files(**paths, names={key: f"--{key} {path}" for key, path in paths.items()})


def _run_personalize(args) -> int:
    from . import methods
    from .personalization.result import check_output_folder

    settings = _settings_from_args(args, args.method)
    case = _case_from_args(args, args.method)
    check_output_folder(args.out, case)  # before the long run, not only when writing
    bar = _progress_for(args, f"personalizing ({args.method})")
    try:
        result = methods.personalize(case, args.method, settings=settings, progress=bar)
    finally:
        bar.close()
    report = result.write(args.out)
    print(json.dumps({"out": str(args.out), "parameters": _parameter_summary(report["parameters"]),
                      "quality": report["quality"]["status"], "timings_s": report["timings_s"],
                      **({"forward_runs": report["forward_runs"]} if "forward_runs" in report else {})}, indent=2))
    if report["quality"]["status"] != "ok":
        from .personalization.quality import POOR_FIT_EXIT_CODE

        for warning in report["quality"]["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"warning: the result in {args.out} does not explain the segmentations; check the inputs (are T1Gd "
              f"and FLAIR the right masks, on the right image?) before using it", file=sys.stderr)
        return POOR_FIT_EXIT_CODE
    return 0


def _parameter_summary(parameters: dict) -> dict:
    """Each parameter's value (or MAP and 95 % interval), rounded for the terminal."""
    out = {}
    for name, entry in parameters.items():
        if "value" in entry:
            out[name] = entry["value"]
        else:
            out[name] = {"map": round(entry["map"], 4), "ci95": [round(c, 4) for c in entry["ci95"]]}
    return out


def _add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the personalization methods and their settings",
                       description="Each personalization method, one line on what it does, the inputs it reads and "
                                   "its settings with defaults and units (give them to `personalize` as flags or "
                                   "in a --settings JSON file).")
    p.add_argument("--json", action="store_true", help="machine-readable output (what the Slicer module reads)")
    p.set_defaults(run=_run_methods)


def _run_methods(args) -> int:
    from . import methods

    described = methods.available()
    if args.json:
        print(json.dumps({"methods": described}, indent=2))
        return 0
    for method in described:
        inputs = method["inputs"]
        print(f"{method['name']}: {method['summary']}")
        print(f"  inputs: {' '.join(inputs['required'])} (required); {' '.join(inputs['optional'])} (optional)")
        for field in method["settings"]:
            unit = f" {field['unit']}" if field["unit"] else ""
            shown = field["flag"] or "--settings"
            print(f"  {field['name']:<28} {str(field['default']) + unit:<14} {shown:<18} {field['help']}")
        print()
    return 0


def _add_cohort(sub) -> None:
    from . import methods
    from .cohort.task import EXECUTION_SETTINGS

    names = methods.names()
    p = sub.add_parser("cohort", help="personalize every patient of a cohort on Dask (resumable)",
                       description="Personalize each patient under --input with one method, one Dask task per "
                                   "patient (a LocalCluster on this machine, or --scheduler), each patient's "
                                   "results written atomically to --out/<patient>/ with summary.csv and "
                                   "summary.png. A rerun skips finished patients whose settings and inputs are "
                                   "unchanged. Exit codes: 0 every patient ok, 1 some failed (see summary.csv), "
                                   "2 bad input, 130 interrupted. Details: docs/cohort.md.")
    p.add_argument("--input", type=Path, required=True,
                   help="a folder of patient folders (our file names, BraTS *_t1/_t1ce/_flair/_seg, or "
                        "PREDICT-GBM Patient-XXXXX/XXXXX-{wm,gm,csf,tumorseg,pet}), or a CSV manifest "
                        "(columns patient, t1, t1gd, flair, ... or seg)")
    p.add_argument("--method", choices=names, default=names[0], help=f"default {names[0]}")
    p.add_argument("--out", type=Path, required=True,
                   help="results folder: <patient>/ each, summary.csv, summary.png, cohort.log")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster here)")
    p.add_argument("--workers", dest="cluster_workers", type=int, metavar="N",
                   help="LocalCluster worker processes, one thread each (default: one per CPU)")
    p.add_argument("--predict-gbm-out", type=Path, metavar="DIR",
                   help="also copy each patient's density to DIR/<id>.nii.gz (PREDICT-GBM's container output; "
                        "<id> is the folder name without 'Patient-')")
    group = p.add_argument_group("method settings, the same for every patient (those of other methods are "
                                 "refused)")
    for field, owners in _method_flags().values():
        if field["name"] not in EXECUTION_SETTINGS:  # a patient's simulations run on the cohort's cluster
            _add_setting_flag(group, field, owners, names)
    p.add_argument("--settings", type=Path, metavar="JSON",
                   help="a JSON object of the method's settings (every field `methods` lists); flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_cohort, **{name: None for name in EXECUTION_SETTINGS})


def _run_cohort(args) -> int:
    from .cohort import predict_gbm
    from .cohort.layouts import find_patients
    from .cohort.run import run_cohort

    settings = _settings_from_args(args, args.method)
    cohort = find_patients(args.input)
    for line in cohort.describe():
        print(line, file=sys.stderr)
    export = predict_gbm.exporter(args.predict_gbm_out) if args.predict_gbm_out is not None else None
    try:
        result = run_cohort(cohort, args.method, args.out, settings, scheduler=args.scheduler,
                            workers=args.cluster_workers, show_progress=not args.quiet, on_result=export)
    except KeyboardInterrupt:
        print(f"interrupted: finished patients are complete in {args.out} (patients in flight were not written); "
              f"run the same command again to resume", file=sys.stderr)
        return 130
    print(json.dumps({"out": str(args.out), "patients": len(result.rows), "computed": len(result.computed),
                      "skipped_as_finished": len(result.skipped), "failed": list(result.failed),
                      "summary": str(result.summary_csv)}, indent=2))
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m TumorPersonalizationLib",
                                     description="Personalized glioma growth models (TumorPersonalization).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_simulate(sub)
    _add_plan(sub)
    _add_personalize(sub)
    _add_methods(sub)
    _add_cohort(sub)
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
