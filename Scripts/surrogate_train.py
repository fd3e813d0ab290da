"""Train the geometry-aware surrogate from a committed config (resumable; CPU or GPU).

The shipped weights ``Resources/Surrogate/surrogate.pt`` and log ``Resources/Surrogate/training_log.jsonl`` are this
script's output for ``Resources/Surrogate/config.json`` on the dataset made by ``Scripts/surrogate_make_dataset.py``::

    python Scripts/surrogate_make_dataset.py --out surrogate_data
    python Scripts/surrogate_train.py --data surrogate_data --out surrogate_run [--device cuda] [--max-minutes M]
    cp surrogate_run/surrogate.pt surrogate_run/training_log.jsonl Resources/Surrogate/

An interrupted run (Ctrl-C, --max-minutes, a lost session) continues from surrogate_run/checkpoint.pt when started
again with the same arguments. Exit code 0 when training finished, 3 when it stopped early and can be continued.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.surrogate.config import load_config  # noqa: E402
from TumorPersonalizationLib.surrogate.training.train import train  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (train_*.npz, val_*.npz)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, log, final weights")
    parser.add_argument("--config", type=Path, help="surrogate config (default Resources/Surrogate/config.json)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--max-minutes", type=float, help="stop after this long (checkpointed); rerun to continue")
    parser.add_argument("--train-limit", type=int, help="use only the first N training cases (trials)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(total=1000, desc="training", file=sys.stderr)

    def progress(fraction):
        bar.update(int(1000 * fraction) - bar.n)

    result = train(load_config(args.config), args.data, args.out, device=args.device, max_minutes=args.max_minutes,
                   train_limit=args.train_limit, progress=progress, log=tqdm.write)
    bar.close()
    print(result)
    return 0 if result["finished"] else 3


if __name__ == "__main__":
    run_script(main)
