"""Standard vs model-based plans on synthetic recurrences in the atlas (PREDICT-GBM protocol, synthetic data).

    .venv/bin/python bench/radiotherapy.py

Per case: a tumor grown with the project's solver in the bundled atlas until its core (c >= 0.6) reaches
``--core-ml`` (time T), the "recurrence" = the same tumor 120 days later thresholded at 0.6. Plans: standard =
core + 15 mm clipped to the brain mask with CSF excluded; model = the iso-volume plan (highest densities, same
volume, same limits); and the threshold plan c >= 0.01 for its volume. One line per case.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TumorPersonalizationLib import metrics, radiotherapy  # noqa: E402
from TumorPersonalizationLib.imaging.atlas import load_atlas  # noqa: E402
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain  # noqa: E402

CASES = [  # name, seed RAS mm, Dw mm^2/day, rho 1/day
    ("left centrum semiovale", (-25.0, -10.0, 20.0), 0.3, 0.03),
    ("right temporal", (40.0, -10.0, -15.0), 0.5, 0.05),
    ("left frontal", (-22.0, 35.0, 12.0), 0.1, 0.02),
    ("near corpus callosum", (-10.0, 5.0, 24.0), 0.8, 0.04),
    ("right occipital", (25.0, -72.0, 8.0), 0.2, 0.08),
    ("diffuse, slow", (-28.0, -25.0, 30.0), 1.0, 0.01),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core-ml", type=float, default=30.0, help="core volume at diagnosis (mL)")
    parser.add_argument("--follow-up-days", type=float, default=120.0)
    args = parser.parse_args(argv)

    atlas = load_atlas()
    domain = Domain(atlas.wm.array, atlas.gm.array, atlas.wm.spacing_mm)
    ml = atlas.wm.geometry.voxel_volume_ml
    times = np.arange(20.0, 1501.0, 20.0)
    print(f"{'case':24s} {'T':>5s} {'core':>6s} {'recur':>6s} {'plan mL':>8s} {'c>=.01':>7s}  "
          f"{'coverage std / model':>22s}  {'missed mL std / model':>22s}  {'Dice':>5s}")
    wins = 0
    for name, seed_mm, dw, rho in CASES:
        start = time.perf_counter()
        seed = atlas.wm.geometry.ras_to_index(seed_mm)
        series = domain.simulate(dw, rho, times, seed)
        reached = np.nonzero((series >= 0.6).sum(axis=(1, 2, 3)) * ml >= args.core_ml)[0]
        if reached.size == 0:
            print(f"{name:24s} core never reaches {args.core_ml} mL by {times[-1]:.0f} days")
            continue
        t = float(times[reached[0]])
        now, later = domain.simulate(dw, rho, [t, t + args.follow_up_days], seed)
        density = atlas.wm.like(now)
        plans = radiotherapy.make_plans(density, density.like(now >= 0.6), brain_mask=atlas.brain_mask,
                                        csf=atlas.csf, recurrence=density.like(later >= 0.6))
        r = plans.report
        cov = r["recurrence"]
        wide = metrics.volume_ml(radiotherapy.threshold_plan(density, 0.01, atlas.brain_mask))
        wins += cov["model"]["coverage"] >= cov["standard"]["coverage"]
        print(f"{name:24s} {t:5.0f} {r['core_ml']:6.1f} {cov['standard']['recurrence_ml']:6.1f} "
              f"{r['standard']['volume_ml']:8.1f} {wide:7.1f}  "
              f"{cov['standard']['coverage']:10.3f} / {cov['model']['coverage']:.3f}  "
              f"{cov['standard']['missed_ml']:10.2f} / {cov['model']['missed_ml']:7.2f}    "
              f"{r['dice_standard_vs_model']:.3f}   ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"model plan covers at least as much recurrence as the standard plan in {wins} of {len(CASES)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
