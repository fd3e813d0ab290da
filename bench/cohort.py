"""Cohort benchmark: wall time of `cohort` for synthetic patients on a LocalCluster of 1 and 2 workers, the speed-up,
each worker's peak memory, and what that predicts for a 500-patient cohort.

    .venv/bin/python bench/cohort.py                       # 10 patients, TMCMC with 32 samples per stage (minutes)
    .venv/bin/python bench/cohort.py --fast                # TMCMC --fast (320 samples per stage): realistic, slow
    .venv/bin/python bench/cohort.py --workers 1 2 4 --patients 20

The patients: tumors grown with random Dw (0.2-0.4 mm^2/day), rho (0.045-0.06 /day), T (150-200 days) and seed in
the bundled atlas' tissue maps resampled to --spacing-mm (3 mm by default, to keep the default run short), written
in our layout with the tissue maps, so TMCMC calibrates on each patient's grid. Each worker count gets a fresh
cluster and a fresh results folder; the cluster's start-up is timed apart from the run. The estimate for 500
patients assumes the measured seconds per patient and the measured parallel efficiency hold for N workers (the
patients are independent tasks; the scheduler's overhead is milliseconds per task).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from TumorPersonalizationLib.cohort.layouts import find_patients  # noqa: E402
from TumorPersonalizationLib.cohort.run import run_cohort  # noqa: E402
from TumorPersonalizationLib.cohort.synthetic import make_cohort  # noqa: E402
from TumorPersonalizationLib.imaging import Geometry  # noqa: E402
from TumorPersonalizationLib.imaging.atlas import load_atlas  # noqa: E402
from TumorPersonalizationLib.imaging.io import resample_smooth  # noqa: E402
from TumorPersonalizationLib.imaging.tissue import TissueMaps  # noqa: E402


def coarse_atlas(spacing_mm: float) -> TissueMaps:
    """The bundled atlas' WM / GM / CSF and T1 on a grid of ``spacing_mm`` (same extent and orientation)."""
    atlas = load_atlas()
    g = atlas.wm.geometry
    shape = tuple(int(n) for n in np.ceil(np.asarray(g.shape) * np.asarray(g.spacing_mm) / spacing_mm))
    grid = Geometry(shape, (spacing_mm,) * 3, g.origin_ras_mm, g.direction_ras)
    maps = {name: resample_smooth(getattr(atlas, name), grid) for name in ("wm", "gm", "csf", "t1")}
    # Interpolation can push a voxel's WM + GM + CSF a little above 1; the maps must stay probabilities.
    total = np.maximum(maps["wm"].array + maps["gm"].array + maps["csf"].array, 1.0)
    for name in ("wm", "gm", "csf"):
        maps[name] = maps[name].like((np.clip(maps[name].array, 0, 1) / total).astype(np.float32))
    return TissueMaps(maps["wm"], maps["gm"], maps["csf"], maps["t1"], source=f"atlas at {spacing_mm:g} mm")


def peak_rss_mb(client) -> list[float]:
    """Each worker process's peak resident memory (MB) since it started."""
    import resource

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports kB

    return sorted(client.run(peak).values())


def run_once(cohort, workers: int, settings: dict, out: Path) -> dict:
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"NUMBA_NUM_THREADS": "1"})
    client = Client(cluster)
    ready = time.perf_counter()
    try:
        result = run_cohort(cohort, "tmcmc", out, settings, scheduler=client, show_progress=False)
        finished = time.perf_counter()
        memory = peak_rss_mb(client)
    finally:
        client.close()
        cluster.close()
    rows = [r for r in result.rows.values() if r["status"] == "ok"]
    return {"workers": workers, "startup_s": ready - started, "wall_s": finished - ready, "ok": len(rows),
            "failed": len(result.failed), "patient_s": float(np.mean([r["seconds total"] for r in rows])),
            "peak_rss_mb": memory}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--spacing-mm", type=float, default=3.0, help="grid of the synthetic patients")
    parser.add_argument("--samples", type=int, default=32, help="TMCMC samples per stage")
    parser.add_argument("--fast", action="store_true", help="TMCMC --fast (320 samples per stage) instead")
    parser.add_argument("--predictive-draws", type=int, default=4)
    parser.add_argument("--cohort-size", type=int, default=500, help="the cohort the estimate is for")
    parser.add_argument("--keep", type=Path, help="keep the patients and results here (default: a temporary folder)")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    settings = {"predictive_draws": args.predictive_draws, **({"fast": True} if args.fast else
                                                                {"samples": args.samples})}
    try:
        tissue = coarse_atlas(args.spacing_mm)
        make_cohort(root / "patients", tissue, args.patients, rng_seed=0)
        cohort = find_patients(root / "patients")
        runs = [run_once(cohort, n, settings, root / f"results_{n}") for n in args.workers]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    base = runs[0]
    label = "fast (320)" if args.fast else str(args.samples)
    print(f"cohort: {args.patients} synthetic patients on a {tissue.wm.shape} grid at {args.spacing_mm:g} mm, TMCMC "
          f"samples/stage {label}, predictive draws {args.predictive_draws}")
    for run in runs:
        print(f"  {run['workers']} worker(s): wall {run['wall_s']:.1f} s (+{run['startup_s']:.1f} s cluster start), "
              f"{run['ok']} ok / {run['failed']} failed, {run['patient_s']:.1f} s per patient in a worker, "
              f"speed-up {base['wall_s'] / run['wall_s']:.2f} vs {base['workers']} worker(s), peak RSS per worker "
              f"{', '.join(f'{m:.0f}' for m in run['peak_rss_mb'])} MB")
    last = runs[-1]
    efficiency = (base["wall_s"] / last["wall_s"]) / (last["workers"] / base["workers"]) if len(runs) > 1 else 1.0
    per_patient = base["wall_s"] * base["workers"] / args.patients  # worker-seconds per patient, incl. overhead
    memory = max(m for run in runs for m in run["peak_rss_mb"])
    print(f"estimate for {args.cohort_size} patients: {per_patient:.1f} worker-s per patient, parallel efficiency "
          f"{efficiency:.2f} ({last['workers']} vs {base['workers']} workers), ~{memory:.0f} MB per worker:")
    for n in (2, 8, 32, 128):
        hours = args.cohort_size * per_patient / (n * min(1.0, efficiency)) / 3600
        print(f"  {n:4d} workers: {hours:7.2f} h, {n * memory / 1024:6.1f} GB of worker memory")
    print("(on a machine whose cores are busy with other work the efficiency is lower than on an idle one; "
          "rerun there to plan)")
    return 0 if all(run["failed"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
