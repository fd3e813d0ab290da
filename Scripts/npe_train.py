"""Train NPE's amortised first round on the shards of Scripts/npe_make_dataset.py and write its weights.

Usage::

    python Scripts/npe_train.py --data npe_data [--config Resources/NPE/config.json]
        [--out Resources/NPE/npe.pt] [--train-limit N] [--val-cases 100] [--max-minutes M]

Resumable: the run's state is checkpointed after every epoch beside the weights (``npe.checkpoint.pt``); run the
same command again to continue (``--max-minutes`` stops it on purpose, exit 3; Ctrl-C loses at most an epoch).

The weights carry the config (observation crop, network) and the prior box they were trained on; the method
``npe`` loads them with ``torch.load(weights_only=True)`` and uses them for round 1 of every patient without PET.
A training log (losses per epoch, validation coverage) is written beside them as ``training_log.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.npe.config import default_weights, load_config  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (Scripts/npe_make_dataset.py)")
    parser.add_argument("--config", type=Path, help="NPE config (default Resources/NPE/config.json)")
    parser.add_argument("--out", type=Path, default=default_weights(), help="weights file to write")
    parser.add_argument("--train-limit", type=int, help="train on the first N cases only (trials)")
    parser.add_argument("--val-cases", type=int, default=100, help="validation cases for the coverage check")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this wall time")
    args = parser.parse_args(argv)

    from TumorPersonalizationLib.npe.training.train import train_amortised, write_log

    from tqdm import tqdm

    config = load_config(args.config)
    with tqdm(total=1000, desc="training", file=sys.stderr) as bar:
        record = train_amortised(config, args.data, args.out, train_limit=args.train_limit,
                                 val_cases=args.val_cases, max_minutes=args.max_minutes, log=tqdm.write,
                                 progress=lambda fraction: bar.update(int(1000 * fraction) - bar.n))
    if record is None:
        return 3  # not finished: run again to continue
    write_log(record, args.out.with_name("training_log.json"))
    return 0


if __name__ == "__main__":
    run_script(main)
