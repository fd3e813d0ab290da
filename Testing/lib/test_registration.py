"""Registration: a known smooth deformation of the atlas is undone (tissue Dice >= 0.9 both ways)."""
import numpy as np
import pytest
import SimpleITK as sitk

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging.atlas import load_atlas
from TumorPersonalizationLib.imaging.io import apply_geometry_to_sitk, from_sitk, to_sitk
from TumorPersonalizationLib.imaging.registration import is_skull_stripped, register_to_atlas
from TumorPersonalizationLib.imaging.volume import Geometry, Volume


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def known_deformation(atlas_t1):
    """Rotation 6 degrees, 4 % scaling and a 6 mm shift, plus a smooth displacement of up to ~3 mm."""
    affine = sitk.AffineTransform(3)
    angle = np.deg2rad(6.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine.SetMatrix((1.04 * rotation).ravel().tolist())
    affine.SetTranslation((6.0, -4.0, 3.0))
    image = to_sitk(atlas_t1)
    affine.SetCenter(image.TransformContinuousIndexToPhysicalPoint((np.asarray(image.GetSize()) / 2.0).tolist()))
    reference = sitk.Image([24, 24, 24], sitk.sitkFloat32)
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.GetOrigin())
    reference.SetSpacing((np.asarray(image.GetSize()) * np.asarray(image.GetSpacing()) / 23.0).tolist())
    idx = np.indices((24, 24, 24)).astype(float) / 23.0
    field = np.stack([3.0 * np.sin(np.pi * idx[2]) * np.sin(np.pi * idx[1]),
                      2.5 * np.sin(2 * np.pi * idx[0]) * np.sin(np.pi * idx[2]),
                      2.0 * np.sin(np.pi * idx[0]) * np.sin(np.pi * idx[1])], axis=-1)
    displacement = sitk.GetImageFromArray(np.transpose(field, (2, 1, 0, 3)).astype(np.float64), isVector=True)
    displacement.CopyInformation(reference)
    return sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(displacement)])


def warp(volume, transform, geometry, interpolation=sitk.sitkLinear):
    reference = sitk.Image(geometry.shape, sitk.sitkUInt8)
    apply_geometry_to_sitk(reference, geometry)
    image = to_sitk(volume.like(volume.array.astype(np.float32)))
    return from_sitk(sitk.Resample(image, reference, transform, interpolation, 0.0, sitk.sitkFloat32))


@pytest.fixture(scope="module")
def deformed_patient():
    atlas = load_atlas()
    # The "patient" lives on its own grid: 1.2 x 1.2 x 2 mm, shifted.
    g = atlas.t1.geometry
    patient_grid = Geometry((160, 190, 94), (1.2, 1.2, 2.0), np.asarray(g.origin_ras_mm) + [2.0, -3.0, 1.0],
                            g.direction_ras)
    transform = known_deformation(atlas.t1)
    t1 = warp(atlas.t1, transform, patient_grid)
    wm = warp(atlas.wm, transform, patient_grid)
    return atlas, t1, wm


def test_known_deformation_is_recovered(deformed_patient):
    atlas, t1, wm = deformed_patient
    lesion = t1.like(np.zeros(t1.shape, np.uint8))
    lesion[70:80, 100:110, 50:56] = 1
    registration = register_to_atlas(t1, atlas, lesion, skull_stripped=False)
    assert registration.timings_s["total"] < 120
    back = registration.to_atlas(wm)
    assert dice(back.array > 0.5, atlas.wm.array > 0.5) >= 0.9
    forward = registration.to_patient(atlas.wm)
    assert forward.geometry == t1.geometry
    assert dice(forward.array > 0.5, wm.array > 0.5) >= 0.9
    labels = registration.to_patient(atlas.wm.like((atlas.wm.array > 0.5).astype(np.uint8)), "nearest")
    assert set(np.unique(labels.array)) <= {0, 1}


def test_skull_stripping_is_detected():
    atlas = load_atlas()
    assert not is_skull_stripped(atlas.t1)
    assert is_skull_stripped(atlas.t1_stripped)


def test_not_a_brain_is_refused():
    atlas = load_atlas()
    rng = np.random.default_rng(0)
    noise = Volume(rng.random((60, 60, 40)).astype(np.float32), Geometry((60, 60, 40), (3.0, 3.0, 3.0),
                                                                         (-90.0, -90.0, -60.0)))
    with pytest.raises(InputError, match="registration to the atlas failed"):
        register_to_atlas(noise, atlas, skull_stripped=False)
