"""Train the Learn-Morph-Infer inverse network from the committed config (resumable; CPU or GPU).

The shipped weights ``Resources/LMI/inverse_net.pt`` and log ``Resources/LMI/training_log.jsonl`` are this
script's output for ``Resources/LMI/config.json`` on the dataset made by ``Scripts/lmi_make_dataset.py``::

    python Scripts/lmi_make_dataset.py --out lmi_data
    python Scripts/lmi_train.py --data lmi_data --out lmi_run [--device cuda] [--max-minutes M]
    cp lmi_run/inverse_net.pt lmi_run/training_log.jsonl Resources/LMI/

An interrupted run (Ctrl-C, --max-minutes, a lost session) continues from lmi_run/checkpoint.pt when started again
with the same arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.lmi.config import load_config  # noqa: E402
from TumorPersonalizationLib.lmi.training.train_network import train  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (train_*.npz, val_*.npz)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, log, final weights")
    parser.add_argument("--config", type=Path, help="LMI config (default Resources/LMI/config.json)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--max-minutes", type=float, help="stop after this long (checkpointed); rerun to continue")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(total=1000, desc="training", file=sys.stderr)

    def progress(fraction):
        bar.update(int(1000 * fraction) - bar.n)

    result = train(load_config(args.config), args.data, args.out, device=args.device,
                   max_minutes=args.max_minutes, progress=progress, log=tqdm.write)
    bar.close()
    print(result)
    return 0 if result["finished"] else 3


if __name__ == "__main__":
    sys.exit(main())
