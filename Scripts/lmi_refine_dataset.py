"""Refine every case of a Learn-Morph-Infer dataset from its true parameters (see lmi/amortisation.py).

Writes ``refined_{split}_{index}.npz`` beside each shard; a config whose ``training.targets`` is ``"refined"``
then trains on them. Resumable (shards with a refined file are skipped) and parallel: a local process pool, or a
Dask cluster with ``--dask-scheduler``. Cost: ~1-2 s per case per core with 100 simulations on the 3 mm grid.

Usage::

    python Scripts/lmi_refine_dataset.py --data lmi_data [--splits train val] [--shards N] [--evaluations 100]
                                         [--workers N | --dask-scheduler tcp://host:8786] [--config C]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus, make_executor  # noqa: E402
from TumorPersonalizationLib.lmi import config as lmi_config  # noqa: E402
from TumorPersonalizationLib.lmi import dataset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (Scripts/lmi_make_dataset.py)")
    parser.add_argument("--config", type=Path, help="LMI config (default Resources/LMI/config.json)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=dataset.SPLITS)
    parser.add_argument("--shards", type=int, help="refine only the first N shards of each split")
    parser.add_argument("--evaluations", type=int, default=100, help="simulations per case (default 100)")
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--dask-scheduler", help="run on this Dask cluster instead of local processes")
    args = parser.parse_args(argv)

    import numpy as np
    from tqdm import tqdm

    from TumorPersonalizationLib.lmi.amortisation import RefineShards, check_budget

    config = lmi_config.load_config(args.config)
    # One simulation per process; the pool provides the parallelism (spawned workers inherit this).
    os.environ["NUMBA_NUM_THREADS"] = "1"
    for split in args.splits:
        # Only the shards to refine must be there (with --shards, the maker may still be running).
        paths = dataset.shard_paths(args.data, split, check_all=False)[:args.shards]
        for index, path in enumerate(paths):
            dataset.check_shard_index(args.data, split, index, path)
        count = len(paths)
        indices = []
        for index in range(count):
            refined = dataset.refined_path(args.data, split, index)
            if refined.exists():
                check_budget(refined, args.evaluations)
            else:
                indices.append(index)
        print(f"{split}: {len(indices)} shards to refine in {args.data}", flush=True)
        if not indices:
            continue
        # Serial simulations everywhere, even with one worker: the threaded kernel rounds differently, Nelder-Mead
        # amplifies that, and the refined targets would depend on the worker count.
        executor = make_executor(RefineShards(args.data, split, config, args.evaluations), args.workers,
                                 args.dask_scheduler)
        rows, start = [], time.perf_counter()
        try:
            with tqdm(total=len(indices), unit="shard", desc=split, file=sys.stderr) as bar:
                # A round of one shard per worker at a time, so the bar moves and an interruption loses little.
                for first in range(0, len(indices), executor.workers):
                    rows.append(executor(np.array(indices[first:first + executor.workers])))
                    bar.update(len(rows[-1]))
        finally:
            executor.close()
        done = np.concatenate(rows)
        done = done[~np.isnan(done[:, 0])]
        if len(done):
            cases = done[:, 0].sum()
            print(f"{split}: refined {cases:.0f} cases in {time.perf_counter() - start:.0f} s; mean objective "
                  f"{np.average(done[:, 1], weights=done[:, 0]):.3f} at the true parameters -> "
                  f"{np.average(done[:, 2], weights=done[:, 0]):.3f} refined; "
                  f"{np.average(done[:, 3], weights=done[:, 0]):.0f} simulations per case", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
