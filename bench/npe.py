"""Neural posterior estimation benchmark: wall time, forward runs, rounds and parameter recovery on the TMCMC
benchmark's synthetic case.

    .venv/bin/python bench/npe.py                 # default settings (amortised weights when they exist)
    .venv/bin/python bench/npe.py --fast          # what `personalize --method npe --fast` runs
    .venv/bin/python bench/npe.py --thresholded   # hard-threshold masks (NPE's own observation model)
    .venv/bin/python bench/npe.py --smoke         # end to end in about a minute: tiny network, 2 x 40 simulations,
                                                  # a 3 mm grid (a check that everything runs, not a measurement)

The case is bench/tmcmc.py's: Dw = 0.3 mm^2/day, rho = 0.03 /day, T = 250 days, seed at RAS (-25, -10, 20) mm
in the bundled atlas; masks from the thesis' Bernoulli observation model (u_c = 0.7 / 0.25, sigma_alpha = 0.05) or
hard thresholds with --thresholded. Printed: one line of cost, the rounds, then the recovery checks (mu1, mu2 and
the seed inside the 95 % intervals; Dice of the MAP density against the truth at c = 0.25 and 0.6).
Not yet here (they need the amortised weights): the simulation-based calibration on 200 held-out cases and the
50-case coverage after the rounds of issue 30.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TumorPersonalizationLib import metrics  # noqa: E402
from TumorPersonalizationLib.imaging.tissue import load_tissue_maps  # noqa: E402
from TumorPersonalizationLib.methods import npe  # noqa: E402
from TumorPersonalizationLib.personalization import Case  # noqa: E402
from TumorPersonalizationLib.synthetic import synthetic_case  # noqa: E402

TRUTH = dict(dw=0.3, rho=0.03, days=250.0, seed=(-25.0, -10.0, 20.0))
SMOKE_CONFIG = {"observation": {"crop_size": 16, "crop_spacing_mm": 4.0},
                "embedding": {"channels": [4, 8], "features": 16}, "mdn": {"components": 2, "hidden_features": 32},
                "training": {"batch_size": 32, "learning_rate": 0.001, "validation_fraction": 0.15,
                             "stop_after_epochs": 3, "max_epochs": 5, "seed": 0}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--simulations", type=int)
    parser.add_argument("--max-rounds", type=int)
    parser.add_argument("--thresholded", action="store_true", help="hard-threshold masks instead of Bernoulli")
    parser.add_argument("--weights", help="amortised weights ('none': round 1 from the prior)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--smoke", action="store_true", help="tiny end-to-end run (no measurement)")
    parser.add_argument("--out", type=Path, help="also write the outputs of `personalize` here")
    args = parser.parse_args(argv)

    tissue = load_tissue_maps()
    case = synthetic_case(tissue, TRUTH["dw"], TRUTH["rho"], TRUTH["days"], TRUTH["seed"], uc_t1gd=0.7,
                          uc_flair=0.25, sigma_alpha=None if args.thresholded else 0.05)
    patient = Case.from_volumes(case.t1gd, case.flair)  # on the atlas grid: personalized in the atlas
    values = {"workers": args.workers, "weights": args.weights}
    if args.smoke:
        config = Path(tempfile.mkdtemp(prefix="npe-smoke-")) / "config.json"
        config.write_text(json.dumps(SMOKE_CONFIG))
        values.update(simulations=40, max_rounds=2, weights="none", config=str(config), grid_mm=3.0,
                      predictive_draws=2, posterior_samples=300)
    elif args.fast:
        values["fast"] = True
    for key in ("simulations", "max_rounds"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    settings = npe.Settings(**values)
    started = time.perf_counter()
    result = npe.personalize(patient, settings)
    wall = time.perf_counter() - started
    report = result.report
    print(f"simulations/round {settings.per_round}  rounds {len(report['rounds'])} ({report['stopped']})  grid "
          f"{report['settings']['grid_mm'][0]} mm  ROI {report['settings']['roi_shape']}  masks "
          f"{'thresholded' if args.thresholded else 'Bernoulli'}  workers {report['settings']['workers']}  "
          f"amortised {report['settings']['amortised']}")
    print(f"wall time {wall:.0f} s (inference {report['timings_s']['inference_s']:.0f} s, posterior predictive "
          f"{report['timings_s']['predictive_s']:.0f} s)  forward runs {report['forward_runs']}")
    for r in report["rounds"]:
        change = "-" if r["change"] is None else f"{r['change']:.3g}"
        print(f"  round {r['round']}: {r['simulations']} simulations from the {r['proposal']}, {r['epochs']} epochs, "
              f"change {change}, ESS {r['effective_sample_fraction']:.2f}, {r['simulation_s']:.0f} s simulating, "
              f"{r['training_s']:.0f} s training")
    ok = True
    for name in ("mu1", "mu2", "x", "y", "z", "uc_T1Gd", "uc_FLAIR"):
        lo, hi = report["parameters"][name]["ci95"]
        true = case.truth[name]
        inside = lo <= true <= hi
        ok &= inside or name not in ("mu1", "mu2", "x", "y", "z")
        print(f"  {name:9s} truth {true:9.4f}  MAP {report['parameters'][name]['map']:9.4f}  "
              f"95% [{lo:9.4f}, {hi:9.4f}]  {'inside' if inside else 'OUTSIDE'}")
    dice = metrics.dice_at_levels(result.density_map, case.density, levels=(0.25, 0.6))
    dice_mean = metrics.dice_at_levels(result.density, case.density, levels=(0.25, 0.6))
    ok &= min(dice.values()) >= 0.95
    print(f"  MAP density Dice vs truth: c>=0.25 {dice['0.25']:.4f}  c>=0.6 {dice['0.6']:.4f}   "
          f"(posterior mean: {dice_mean['0.25']:.4f} / {dice_mean['0.6']:.4f})")
    print(f"recovery {'PASSED' if ok else 'FAILED'}: mu1, mu2 and seed inside their 95% intervals, "
          f"MAP Dice >= 0.95" + ("  (smoke run: not a measurement)" if args.smoke else ""))
    if args.out is not None:
        result.write(args.out, truth=case.truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
