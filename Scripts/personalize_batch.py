#!/usr/bin/env python3
"""Personalize one patient or a folder of patients, in Slicer batch mode or with no Slicer at all.

In Slicer (through the module's Logic; writes MRML nodes to files and a scene)::

    Slicer --no-main-window --python-script Scripts/personalize_batch.py -- --input PATIENTS --out RESULTS

Without Slicer (through the Lib's command line, same settings)::

    .venv/bin/python Scripts/personalize_batch.py --input PATIENTS --out RESULTS

A patient is a folder with ``t1``, ``t1gd`` and ``flair`` images (``.nii.gz``, ``.nii`` or ``.nrrd``; T1Gd and
FLAIR binary or label maps) and optionally ``pet``, ``wm``, ``gm``, ``csf``. ``--input`` is such a folder, or a
folder of them. Each patient's results go to ``RESULTS/<patient>/``. Exit code: 0 when every patient succeeded,
1 when one failed (the others still run), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT, ROOT / "TumorPersonalization"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

ROLES = ("t1", "t1gd", "flair", "pet", "wm", "gm", "csf")
REQUIRED = ("t1", "t1gd", "flair")
SUFFIXES = (".nii.gz", ".nii", ".nrrd")


def find_files(folder: Path) -> dict:
    """{role: path} for the images of one patient folder (roles named by file, case-insensitive)."""
    files = {}
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name[:-len(suffix)] in ROLES:
                files[name[:-len(suffix)]] = path
    return files


def find_patients(folder: Path) -> dict:
    """{patient name: files} for ``folder`` itself or, when it is no patient, each sub-folder that is one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"error: --input {folder} is not a folder")
    candidates = [folder] if all(r in find_files(folder) for r in REQUIRED) else sorted(
        p for p in folder.iterdir() if p.is_dir())
    patients = {p.name: find_files(p) for p in candidates}
    patients = {name: files for name, files in patients.items() if all(r in files for r in REQUIRED)}
    if not patients:
        raise SystemExit(f"error: no patient under {folder} (a patient folder holds t1, t1gd and flair images)")
    return patients


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, required=True, help="a patient folder, or a folder of patient folders")
    p.add_argument("--out", type=Path, required=True, help="results folder (one sub-folder per patient)")
    p.add_argument("--method", default="lmi", choices=["lmi", "lmiRefine", "tmcmc"],
                   help="lmi: Learn-Morph-Infer (default), lmiRefine: with refinement, tmcmc: Bayesian")
    p.add_argument("--samples", type=int, default=2048, help="TMCMC samples per stage")
    p.add_argument("--fast", action="store_true", help="TMCMC with 320 samples per stage")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: all cores)")
    p.add_argument("--margin-mm", type=float, default=15.0, help="standard-CTV margin (mm)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-slicer", action="store_true", help="use the Lib's CLI even inside Slicer")
    p.add_argument("--dry-run", action="store_true", help="list the patients (and CLI commands) only")
    args = p.parse_args(argv)
    for name, low in (("seed", 0), ("workers", 0), ("samples", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    return args


def in_slicer() -> bool:
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "app") and hasattr(slicer.app, "applicationLogic")


def run_with_cli(name, files, out: Path, args) -> dict:
    """One patient through ``python -m TumorPersonalizationLib personalize`` (no Slicer)."""
    from TumorPersonalizationModuleLib import runner

    method = runner.METHODS[args.method]
    command = runner.buildCommand(
        method, {f"--{role}": path for role, path in files.items()}, out, marginMm=args.margin_mm, samples=args.samples, fast=args.fast, workers=args.workers, randomSeed=args.seed)
    if args.dry_run:
        return {"command": command}
    job = runner.CliJob(command, env=runner.childEnvironment())
    job.wait(callback=lambda j: print(f"\r{name}: {100 * j.progress:5.1f}% {j.message}", end="", flush=True))
    print()
    if not job.succeeded:
        raise RuntimeError(job.errorMessage())
    return {"out": str(out), "seconds": round(job.elapsedS, 1)}


def run_with_logic(name, files, out: Path, args) -> dict:
    """One patient through the Slicer module's Logic: files -> nodes -> personalization -> node files + scene."""
    import slicer

    import TumorPersonalization as module

    if args.dry_run:
        return {"files": {role: str(path) for role, path in files.items()}}
    slicer.mrmlScene.Clear()
    logic = module.TumorPersonalizationLogic()
    nodes = {role: logic.loadVolumeFile(path, labelmap=role in ("t1gd", "flair"), name=f"{name} {role}")
             for role, path in files.items()}
    inputs = module.PersonalizationInputs(nodes["t1"], nodes["t1gd"], nodes["flair"], nodes.get("pet"),
                                          nodes.get("wm"), nodes.get("gm"), nodes.get("csf"))
    settings = module.PersonalizationSettings(method=args.method, tmcmcSamples=args.samples, tmcmcFast=args.fast,
                                              workers=args.workers, randomSeed=args.seed, marginMm=args.margin_mm)
    result = logic.run(inputs, settings, progress=lambda f, m: print(f"\r{name}: {100 * f:5.1f}% {m}", end="",
                                                                     flush=True))
    print()
    written = logic.saveResults(result, out)
    (out / "report.json").write_text(json.dumps(result.report, indent=2))
    scene = out / "scene.mrb"
    if not slicer.mrmlScene.WriteToMRB(str(scene)):
        raise RuntimeError(f"could not write {scene}")
    return {"out": str(out), "files": sorted(str(p.name) for p in written.values()) + ["report.json", "scene.mrb"],
            "volumes_ml": {k: round(v, 2) for k, v in result.volumesMl.items()}, "notes": result.notes}


def main(argv=None, use_slicer=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_slicer = (in_slicer() and not args.no_slicer) if use_slicer is None else use_slicer
    run_one = run_with_logic if use_slicer else run_with_cli
    summary, failed = {}, 0
    for name, files in find_patients(args.input).items():
        try:
            summary[name] = run_one(name, files, args.out / name, args)
        except Exception as exc:  # one bad patient must not stop the cohort
            failed += 1
            summary[name] = {"error": str(exc)}
            print(f"{name}: error: {exc}", file=sys.stderr)
    print(json.dumps({"via": "Slicer module Logic" if use_slicer else "TumorPersonalizationLib CLI",
                      "patients": summary}, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    if in_slicer():
        import slicer

        slicer.util.exit(code)
    sys.exit(code)
