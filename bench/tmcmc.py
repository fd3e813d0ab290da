"""Bayesian calibration benchmark: wall time, forward runs, stages and parameter recovery on synthetic cases.

    .venv/bin/python bench/tmcmc.py            # default settings: 2048 samples per stage on the 1.5 mm atlas grid
    .venv/bin/python bench/tmcmc.py --fast     # what `personalize --method tmcmc --fast` runs: 320 samples per stage
    .venv/bin/python bench/tmcmc.py --pet      # add a synthetic FET-PET (b u + noise)
    .venv/bin/python bench/tmcmc.py --grid-mm 3 --thresholded   # a coarser model grid / hard-threshold masks
    .venv/bin/python bench/tmcmc.py --fast --forward surrogate  # the likelihood on the neural surrogate
    .venv/bin/python bench/tmcmc.py --fast --compare-forward    # both; the posterior shift in numerical stds
    .venv/bin/python bench/tmcmc.py --fast --resolution-mm 1 --coarse-grid-mm 3   # a 1 mm case, multi-fidelity
    .venv/bin/python bench/tmcmc.py --fast --resolution-mm 1 --coarse-grid-mm 3 --compare-fidelity  # and 1 mm alone

The case: Dw = 0.3 mm^2/day, rho = 0.03 /day, T = 250 days, seed at RAS (-25, -10, 20) mm in the bundled atlas;
T1Gd and FLAIR masks drawn from the thesis' Bernoulli observation model (u_c = 0.7 / 0.25, sigma_alpha = 0.05), or
hard thresholds with --thresholded. With --resolution-mm the atlas is resampled to that grid and the truth is
grown by the fine-step reference solver (classical RK4 at a quarter of its stability limit), so the data are not
made by the calibration's own discretisation; calibration then runs in those tissue maps. Printed: one line of cost, then the recovery checks
(mu1 = sqrt(Dw T), mu2 = sqrt(rho T) and the seed inside the 95 % intervals; Dice of the MAP density against the
ground truth at c = 0.25 and 0.6).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TumorPersonalizationLib import metrics  # noqa: E402
from TumorPersonalizationLib.imaging.tissue import load_tissue_maps, regrid_tissue  # noqa: E402
from TumorPersonalizationLib.models.fisher_kolmogorov import StepSettings  # noqa: E402
from TumorPersonalizationLib.methods import tmcmc  # noqa: E402
from TumorPersonalizationLib.personalization import Case  # noqa: E402
from TumorPersonalizationLib.synthetic import synthetic_case  # noqa: E402

TRUTH = dict(dw=0.3, rho=0.03, days=250.0, seed=(-25.0, -10.0, 20.0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--pet", action="store_true")
    parser.add_argument("--thresholded", action="store_true", help="hard-threshold masks instead of Bernoulli")
    parser.add_argument("--grid-mm", type=float)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--out", type=Path, help="also write the outputs of `personalize` here")
    parser.add_argument("--forward", choices=("numerical", "surrogate"), default="numerical")
    parser.add_argument("--compare-forward", action="store_true",
                        help="run with the numerical solver, then the surrogate: posterior shift and time ratio")
    parser.add_argument("--resolution-mm", type=float,
                        help="make the case on the atlas resampled to this grid, with the fine-step reference solver")
    parser.add_argument("--coarse-grid-mm", type=float, help="multi-fidelity: the coarse grid of the early stages")
    parser.add_argument("--switch-beta", type=float, default=tmcmc.Settings().switch_beta)
    parser.add_argument("--delayed-acceptance", action="store_true", help="multi-fidelity: screen fine moves")
    parser.add_argument("--compare-fidelity", action="store_true",
                        help="run multi-fidelity, then the calibration grid alone: posteriors side by side")
    args = parser.parse_args(argv)

    tissue = load_tissue_maps()
    steps = StepSettings()
    if args.resolution_mm is not None:
        tissue, steps = regrid_tissue(tissue, args.resolution_mm), StepSettings(method="rk4")
    started = time.perf_counter()
    case = synthetic_case(tissue, TRUTH["dw"], TRUTH["rho"], TRUTH["days"], TRUTH["seed"], uc_t1gd=0.7,
                          uc_flair=0.25, sigma_alpha=None if args.thresholded else 0.05,
                          pet_b=0.9 if args.pet else None, pet_sigma=0.05, steps=steps)
    print(f"case: {tissue.geometry.shape} voxels of {tissue.geometry.spacing_mm[0]} mm, truth by the "
          f"{steps.method} solver in {time.perf_counter() - started:.0f} s")
    if args.resolution_mm is None:  # on the atlas grid: calibrated in the atlas
        patient = Case.from_volumes(case.t1gd, case.flair, pet=case.pet)
    else:
        patient = Case.from_volumes(case.t1gd, case.flair, pet=case.pet, wm=tissue.wm, gm=tissue.gm, csf=tissue.csf)
    variants = [(forward, args.coarse_grid_mm) for forward in
                (("numerical", "surrogate") if args.compare_forward else (args.forward,))]
    if args.compare_fidelity:
        variants.append((args.forward, None))
    runs = {}
    for forward, coarse in variants:
        settings = tmcmc.Settings(samples=args.samples or tmcmc.DEFAULT_SAMPLES, fast=args.fast and not args.samples,
                                  workers=args.workers, grid_mm=args.grid_mm, forward=forward,
                                  coarse_grid_mm=coarse, switch_beta=args.switch_beta,
                                  delayed_acceptance=args.delayed_acceptance)
        label = forward if coarse is None else f"{forward}, multi-fidelity from {coarse} mm"
        print(f"--- forward model: {label}")
        runs[label] = run(patient, case, settings, args)
    if args.compare_forward:
        print_shift(runs["numerical"], runs["surrogate"], "surrogate", "numerical")
    if args.compare_fidelity:
        print_shift(runs[args.forward], runs[f"{args.forward}, multi-fidelity from {args.coarse_grid_mm} mm"],
                    "multi-fidelity", "calibration grid alone")
    return 0


def run(patient, case, settings, args):
    """One calibration with its cost and recovery lines; returns (result, wall seconds)."""
    n = settings.population
    started = time.perf_counter()
    result = tmcmc.personalize(patient, settings)
    wall = time.perf_counter() - started
    report = result.report
    print(f"samples/stage {n}  grid {report['settings']['grid_mm'][0]} mm  ROI {report['settings']['roi_shape']}  "
          f"PET {'yes' if args.pet else 'no'}  masks {'thresholded' if args.thresholded else 'Bernoulli'}  "
          f"workers {report['settings']['workers']}")
    print(f"wall time {wall:.0f} s (sampling {report['timings_s']['sampling_s']:.0f} s, posterior predictive "
          f"{report['timings_s']['predictive_s']:.0f} s)  forward runs {report['forward_runs']}  "
          f"stages {len(report['stages'])}  log evidence {report['log_evidence']:.1f}")
    by_grid = report["forward_runs_by_grid"]
    if by_grid["coarse"]:
        switch = next(s for s in report["stages"] if s["phase"] != "coarse")
        print(f"forward runs: coarse grid {by_grid['coarse']}, calibration grid {by_grid['fine']}, posterior "
              f"predictive {by_grid['posterior_predictive']}; coarse stages took {switch['seconds']:.0f} s")
    ok = True
    for name in ("mu1", "mu2", "x", "y", "z", "uc_T1Gd", "uc_FLAIR") + (("b",) if args.pet else ()):
        lo, hi = report["parameters"][name]["ci95"]
        true = case.truth[name]
        inside = lo <= true <= hi
        ok &= inside or name not in ("mu1", "mu2", "x", "y", "z")
        print(f"  {name:9s} truth {true:9.4f}  MAP {report['parameters'][name]['map']:9.4f}  "
              f"95% [{lo:9.4f}, {hi:9.4f}]  {'inside' if inside else 'OUTSIDE'}")
    dice = metrics.dice_at_levels(result.density_map, case.density, levels=(0.25, 0.6))
    dice_mean = metrics.dice_at_levels(result.density, case.density, levels=(0.25, 0.6))
    ok &= min(dice.values()) >= 0.9
    print(f"  MAP density Dice vs truth: c>=0.25 {dice['0.25']:.4f}  c>=0.6 {dice['0.6']:.4f}   "
          f"(posterior mean: {dice_mean['0.25']:.4f} / {dice_mean['0.6']:.4f})")
    print(f"recovery {'PASSED' if ok else 'FAILED'}: mu1, mu2 and seed inside their 95% intervals, "
          f"MAP Dice >= 0.9")
    if args.out is not None:
        result.write(args.out / settings.forward if args.compare_forward else args.out, truth=case.truth)
    return result, wall


def print_shift(reference_run, other_run, other: str, reference: str) -> None:
    """How far one posterior's mean lies from a reference posterior's, in the reference's std; their 95 %
    intervals side by side, and the wall-time ratio."""
    (base, wall_base), (result, wall) = reference_run, other_run
    column = lambda run, name: run.samples[:, list(run.sample_names).index(name)]  # noqa: E731
    print(f"posterior shift, {other} against {reference} (mean difference / {reference} std):")
    for name in ("mu1", "mu2", "x", "y", "z"):
        ref, new = column(base, name), column(result, name)
        shift = (new.mean() - ref.mean()) / ref.std()
        ci = lambda v: "[{:9.4f}, {:9.4f}]".format(*np.percentile(v, [2.5, 97.5]))  # noqa: E731
        print(f"  {name:4s} {reference} {ref.mean():9.4f} {ci(ref)}   {other} {new.mean():9.4f} {ci(new)}   "
              f"shift {shift:+.2f} std")
    print(f"wall time: {other} / {reference} = {wall:.0f} s / {wall_base:.0f} s = {wall / wall_base:.2f}")


if __name__ == "__main__":
    sys.exit(main())
