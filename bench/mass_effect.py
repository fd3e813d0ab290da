"""Mass-effect benchmark: a typical case on the bundled 1.5 mm atlas, a 64^3 case at 3 mm, and the elasticity solve.

    .venv/bin/python bench/mass_effect.py [--repeats 3] [--gamma 5000]

One line per measurement. Times are wall-clock medians over repeats after set-up (set-up and the one-off numba
compilation or cache load are reported on their own lines). "per solve" is the elasticity solve alone, warm-started
from the previous step's displacement as in the model; "cold solve" starts from u = 0 for the final density.
J- is the smallest Jacobian determinant of the map from the deformed anatomy back to the healthy one (> 0: no
folding).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from forward import timed  # noqa: E402  (bench/forward.py: median wall time of repeated runs)

from TumorPersonalizationLib.imaging.tissue import load_tissue_maps, regrid_tissue  # noqa: E402
from TumorPersonalizationLib.models import fisher_kolmogorov as fk  # noqa: E402
from TumorPersonalizationLib.models import mass_effect as me  # noqa: E402
from TumorPersonalizationLib.models.elasticity import numba_threads, threads_for  # noqa: E402

TYPICAL = (0.5, 0.05, 300.0)  # Dw mm^2/day, rho 1/day, T days (as bench/forward.py)
SEED_RAS_MM = (-25.0, -10.0, 20.0)  # left centrum semiovale, white matter


def crop_around(array: np.ndarray, centre, size: int):
    """A size^3 block centred near ``centre`` (the array zero-padded at the end first where it is smaller)."""
    array = np.pad(array, [(0, max(0, size - n)) for n in array.shape])
    lo = np.clip(np.rint(centre).astype(int) - size // 2, 0, np.asarray(array.shape) - size)
    return array[tuple(slice(a, a + size) for a in lo)], lo


def bench_case(label: str, wm, gm, csf, spacing, seed, gamma: float, repeats: int, factor=None) -> None:
    start = time.perf_counter()
    domain = me.MassEffectDomain(wm, gm, csf, spacing, elasticity_factor=factor)
    setup = time.perf_counter() - start
    print(f"[{label}] grid {wm.shape} at {spacing[0]} mm, crop {domain.body.shape}, elasticity grid "
          f"{domain.elastic.shape} (x{domain.elastic.spacing_mm[0] / spacing[0]:.0f}): set-up {setup:.2f} s",
          flush=True)
    dw, rho, t = TYPICAL
    seconds, result = timed(lambda: domain.simulate(dw, rho, t, seed, gamma), repeats)
    stats = result.stats
    solves = max(1, stats["elasticity_solves"])
    jacobian = me.jacobian_determinant(result.displacement_mm, spacing, sign=-1.0).min()
    fk_domain = fk.Domain(wm, gm, spacing)
    parallel = threads_for(fk_domain.diffusivity.size) > 1  # the thread rule the mass-effect model follows
    fk_seconds, fk_density = timed(lambda: fk_domain.simulate(dw, rho, t, seed, parallel=parallel), repeats)
    ml = float(np.prod(spacing)) / 1000.0
    print(f"[{label}] typical Dw={dw} rho={rho} T={t:.0f} gamma={gamma:g} Pa: time {seconds:.2f} s (median of "
          f"{repeats}; Fisher-Kolmogorov alone {fk_seconds:.2f} s)  steps {stats['steps']}  elasticity solves "
          f"{stats['elasticity_solves']}  CG iterations {stats['cg_iterations'] / solves:.1f} per solve  "
          f"{stats['elasticity_seconds'] / solves * 1000:.0f} ms per solve  advection sub-steps "
          f"{stats['advection_substeps']}  max |u| {stats['max_displacement_mm']:.2f} mm  J- min {jacobian:.3f}  "
          f"volume(c>=0.25) {np.count_nonzero(result.density >= 0.25) * ml:.0f} mL (FK "
          f"{np.count_nonzero(fk_density >= 0.25) * ml:.0f} mL)", flush=True)
    bench_cold_solve(label, domain, result, seed)


def bench_cold_solve(label: str, domain: me.MassEffectDomain, result: me.MassEffectResult, seed) -> None:
    """The elasticity solve alone from u = 0, for the final density in the undeformed tissue."""
    box = tuple(slice(a, b) for a, b in zip(domain.fk.crop_lo, domain.fk.crop_hi))
    c = np.pad(result.density[box], 1).astype(np.float32)
    with numba_threads(threads_for(c.size)):
        seconds, (_, _, report) = timed(lambda: domain.solve_displacement(c, 5000.0), 3)
    print(f"[{label}] cold elasticity solve on {domain.elastic.shape} ({int(domain.elastic.body.sum())} body "
          f"voxels, {threads_for(domain.elastic.body.size)} thread(s)): {seconds * 1000:.0f} ms (with the "
          f"restriction and interpolation), {report.iterations} CG iterations to a relative residual of "
          f"{report.relative_residual:.1e}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=5000.0, help="mass-effect parameter, Pa (default 5000)")
    args = parser.parse_args(argv)

    tissue = load_tissue_maps()
    wm, gm, csf = (v.array for v in (tissue.wm, tissue.gm, tissue.csf))
    spacing = tissue.wm.spacing_mm
    seed = tissue.geometry.ras_to_index(SEED_RAS_MM)
    start = time.perf_counter()
    block = np.zeros((16, 16, 16), dtype=np.float32)
    block[3:13, 3:13, 3:13] = 1.0
    me.MassEffectDomain(block, 0 * block, 0 * block, (3.0, 3.0, 3.0)).simulate(0.1, 0.1, 5.0, (8, 8, 8), 1000.0)
    print(f"JIT compilation / cache load: {time.perf_counter() - start:.2f} s (once per process)", flush=True)

    bench_case("atlas 1.5 mm", wm, gm, csf, spacing, seed, args.gamma, args.repeats)

    coarse = regrid_tissue(tissue, 3.0)
    seed3 = coarse.geometry.ras_to_index(SEED_RAS_MM)
    crops = [crop_around(v.array, seed3, 64) for v in (coarse.wm, coarse.gm, coarse.csf)]
    lo = crops[0][1]
    for factor in (1, 2):
        bench_case(f"64^3 at 3 mm, elasticity x{factor}", *(c for c, _ in crops), coarse.wm.spacing_mm, seed3 - lo,
                   args.gamma, max(args.repeats, 5), factor=factor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
