"""Forward-solver benchmark: speed per case, batch throughput, and accuracy against a fine-step reference.

    .venv/bin/python bench/forward.py [--repeats 5] [--no-reference] [--worst-reference]

One line per (grid, case). Times are wall-clock medians over repeats after set-up; set-up (tissue preparation) and
the one-off JIT compilation are reported on their own lines. The reference is the same spatial discretisation
integrated without splitting by classical RK4 at a quarter of its stability limit in float64
(``StepSettings(method="rk4")``), computed here; "relL2" is ||c - c_ref|| / ||c_ref|| over the grid and the Dice
scores compare {c >= 0.25} and {c >= 0.6}. The worst case's reference at the full grid takes ~10 minutes and is
only computed with --worst-reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TumorPersonalizationLib.execution import available_cpus  # noqa: E402
from TumorPersonalizationLib.imaging.atlas import load_atlas  # noqa: E402
from TumorPersonalizationLib.models import fisher_kolmogorov as fk  # noqa: E402

CASES = {  # name: (Dw mm^2/day, rho 1/day, T days)
    "typical": (0.5, 0.05, 300.0),
    "slow": (0.05, 0.01, 1000.0),
    "fast-short": (1.5, 0.2, 60.0),
    "worst": (1.5, 0.2, 1500.0),
}
SEED_RAS_MM = (-25.0, -10.0, 20.0)  # left centrum semiovale, white matter
PRIOR = dict(dw=(0.02, 1.5), rho=(0.002, 0.2), t=(30.0, 1500.0))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def crop_around(array: np.ndarray, centre, size: int):
    lo = np.clip(np.rint(centre).astype(int) - size // 2, 0, np.asarray(array.shape) - size)
    return array[tuple(slice(a, a + size) for a in lo)], lo


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_grid(label, wm, gm, spacing, seed, args):
    start = time.perf_counter()
    domain = fk.Domain(wm, gm, spacing)
    setup = time.perf_counter() - start
    box = domain.diffusivity.shape
    print(f"[{label}] grid {wm.shape} at {spacing[0]} mm, tissue box {box}: set-up {setup * 1000:.0f} ms", flush=True)
    for name, (dw, rho, t) in CASES.items():
        stats = {}
        repeats = max(1, args.repeats // 2) if name == "worst" else args.repeats
        seconds, density = timed(lambda: domain.simulate(dw, rho, t, seed, stats=stats), repeats)
        line = (f"[{label}] {name:10s} Dw={dw:<5} rho={rho:<5} T={t:<6.0f} time {seconds:7.3f} s "
                f"(median of {repeats})  steps {stats['steps']:4d}  stages {stats['stages']:5d}")
        want_reference = not args.no_reference and (name != "worst" or args.worst_reference or label == "64^3")
        if want_reference:
            start = time.perf_counter()
            reference = domain.simulate(dw, rho, t, seed, steps=fk.StepSettings(method="rk4"))
            ref_seconds = time.perf_counter() - start
            err = np.linalg.norm(density - reference) / np.linalg.norm(reference)
            line += (f"  relL2 {100 * err:5.2f}%  Dice@0.25 {dice(density >= 0.25, reference >= 0.25):.4f}"
                     f"  Dice@0.6 {dice(density >= 0.6, reference >= 0.6):.4f}  (reference {ref_seconds:.0f} s)")
        line += f"  volume(c>=0.25) {np.count_nonzero(density >= 0.25) * np.prod(spacing) / 1000:.0f} mL"
        print(line, flush=True)
    return domain


def bench_batch(domain, seed, n, rng):
    workers = available_cpus()
    dw = np.full(n, CASES["typical"][0])
    rho = np.full(n, CASES["typical"][1])
    t = np.full(n, CASES["typical"][2])
    start = time.perf_counter()
    domain.simulate_batch(dw, rho, t, seed, workers=workers)
    rate = n / (time.perf_counter() - start) * 3600
    print(f"[64^3] batch of {n} typical cases on {workers} threads: {rate:,.0f} simulations/hour", flush=True)

    log_uniform = lambda lo_hi, size: np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]), size))  # noqa: E731
    dw, rho = log_uniform(PRIOR["dw"], n), log_uniform(PRIOR["rho"], n)
    t = rng.uniform(*PRIOR["t"], n)
    start = time.perf_counter()
    domain.simulate_batch(dw, rho, t, seed, workers=workers)
    rate = n / (time.perf_counter() - start) * 3600
    print(f"[64^3] batch of {n} prior draws (Dw, rho log-uniform, T uniform) on {workers} threads: "
          f"{rate:,.0f} simulations/hour", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="simulations per batch-throughput measurement")
    parser.add_argument("--no-reference", action="store_true", help="skip the fine-step reference (fast)")
    parser.add_argument("--worst-reference", action="store_true", help="also the worst case's full-grid reference")
    args = parser.parse_args(argv)

    atlas = load_atlas()
    spacing = atlas.wm.spacing_mm
    seed = atlas.wm.geometry.ras_to_index(SEED_RAS_MM)
    start = time.perf_counter()
    fk.Domain(atlas.wm.array[:8, :8, :8] + 1, atlas.gm.array[:8, :8, :8] * 0, spacing).simulate(0.1, 0.1, 1.0,
                                                                                                 (4, 4, 4))
    print(f"JIT compilation / cache load: {time.perf_counter() - start:.2f} s (once per process)", flush=True)

    bench_grid("128^3", atlas.wm.array, atlas.gm.array, spacing, seed, args)
    wm64, lo = crop_around(atlas.wm.array, seed, 64)
    gm64, _ = crop_around(atlas.gm.array, seed, 64)
    domain64 = bench_grid("64^3", wm64, gm64, spacing, seed - lo, args)
    bench_batch(domain64, seed - lo, args.batch, np.random.default_rng(0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
