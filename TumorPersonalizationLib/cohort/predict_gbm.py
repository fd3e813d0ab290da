"""The PREDICT-GBM benchmark's container interface: read ``/mlcube_io0``, write ``/mlcube_io1``.

The benchmark runs each growth model as a container with two folders mounted::

    /mlcube_io0/Patient-XXXXX/XXXXX-{gm,wm,csf,tumorseg,pet}.nii.gz     (pet optional; tumorseg labels 1/2/3)
    /mlcube_io1/XXXXX.nii.gz                                            (the tumor cell density, patient's grid)

``python -m TumorPersonalizationLib.cohort.predict_gbm [--input DIR] [--output DIR] [cohort options]`` runs the
cohort command on that layout (method ``tmcmc`` unless ``--method`` says otherwise: the layout has no T1 image for
Learn-Morph-Infer) and copies each patient's ``density.nii.gz`` to ``<output>/XXXXX.nii.gz``. The full results
(report, plans, figures, ``summary.csv``) go to ``--work`` (default ``<output>/.tumorpersonalization``), which also
makes a rerun of the container resume. Any other option is the cohort command's (``--fast``, ``--workers``,
``--scheduler``, ``--settings``, ...).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..files import atomic_path
from .layouts import PREDICT_GBM_PREFIX

DEFAULT_INPUT = Path("/mlcube_io0")
DEFAULT_OUTPUT = Path("/mlcube_io1")
DEFAULT_METHOD = "tmcmc"
DENSITY = "density.nii.gz"


def subject_id(patient: str) -> str:
    """``Patient-00042`` -> ``00042`` (other names are kept as they are)."""
    return patient[len(PREDICT_GBM_PREFIX):] if patient.startswith(PREDICT_GBM_PREFIX) else patient


def exporter(output):
    """An ``on_result`` callback for :func:`.run.run_cohort` that copies each finished patient's density to
    ``output/<id>.nii.gz`` (atomically, so the benchmark never reads a partial file)."""
    output = Path(output)

    def export(patient, row, folder) -> None:
        target = output / f"{subject_id(patient.name)}.nii.gz"
        with atomic_path(target, ".nii.gz") as tmp:
            shutil.copyfile(Path(folder) / DENSITY, tmp)
    return export


def main(argv=None) -> int:
    """Run the cohort command on the PREDICT-GBM layout; returns the cohort command's exit code."""
    parser = argparse.ArgumentParser(prog="python -m TumorPersonalizationLib.cohort.predict_gbm",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Other options are passed to `python -m TumorPersonalizationLib cohort`.")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT,
                        help=f"folder of Patient-XXXXX folders (default {DEFAULT_INPUT})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where XXXXX.nii.gz are written (default {DEFAULT_OUTPUT})")
    parser.add_argument("--work", type=Path, help="full results and resume records (default <output>/"
                                                  ".tumorpersonalization)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    from ..cli import main as cli_main

    work = args.work if args.work is not None else args.output / ".tumorpersonalization"
    # Given first, so a --method among the passed options (argparse keeps the last) overrides the default.
    return cli_main(["cohort", "--method", DEFAULT_METHOD, "--input", str(args.input), "--out", str(work),
                     "--predict-gbm-out", str(args.output), *rest])


if __name__ == "__main__":
    from ..errors import run_script

    run_script(main)  # a container is stopped with SIGTERM: end as Ctrl-C does, with no half-written patient
