"""Volumes, geometry and file I/O: round trips keep geometry; RAS/LPS agree with SimpleITK's own mapping."""
import numpy as np
import pytest
import SimpleITK as sitk

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, Volume, read_volume, resample, write_volume
from TumorPersonalizationLib.imaging.atlas import load_atlas
from TumorPersonalizationLib.imaging.volume import reorient_to_ras_axes


def oblique_direction(angle_deg=20.0):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return rot @ np.diag([-1.0, 1.0, 1.0])  # rotated and with the first axis flipped


@pytest.fixture
def oblique_volume():
    rng = np.random.default_rng(0)
    array = rng.random((7, 9, 5)).astype(np.float32)
    return Volume.from_array(array, spacing_mm=(0.9, 1.3, 3.0), origin_ras_mm=(-12.5, 40.0, 7.25),
                             direction_ras=oblique_direction())


def test_index_ras_round_trip(oblique_volume):
    g = oblique_volume.geometry
    ijk = np.array([[0, 0, 0], [6, 8, 4], [2.5, 3.25, 1.5]])
    np.testing.assert_allclose(g.ras_to_index(g.index_to_ras(ijk)), ijk, atol=1e-12)
    np.testing.assert_allclose(g.index_to_ras([0, 0, 0]), g.origin_ras_mm)
    np.testing.assert_allclose(g.affine[:3, :3] @ [1, 2, 3] + g.affine[:3, 3], g.index_to_ras([1, 2, 3]))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".nii"])
def test_file_round_trip_keeps_values_and_geometry(tmp_path, oblique_volume, suffix):
    path = write_volume(oblique_volume, tmp_path / f"v{suffix}")
    back = read_volume(path)
    assert back.geometry.is_close(oblique_volume.geometry, tol_mm=1e-4)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    assert not list(tmp_path.glob(".*partial*"))


def test_ras_matches_simpleitk_lps(tmp_path, oblique_volume):
    """SimpleITK's own index-to-physical mapping (LPS) equals ours with x and y negated."""
    path = write_volume(oblique_volume, tmp_path / "v.nii.gz")
    image = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (6, 8, 4), (3, 1, 2)]:
        lps = np.asarray(image.TransformIndexToPhysicalPoint(ijk))
        ras = oblique_volume.geometry.index_to_ras(ijk)
        np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-4)
        # Our array[i, j, k] is the voxel SimpleITK calls index (i, j, k).
        assert image.GetPixel(ijk) == pytest.approx(float(oblique_volume.array[ijk]))


def test_resample_onto_a_shifted_grid_moves_voxels(oblique_volume):
    g = oblique_volume.geometry
    shifted_origin = g.index_to_ras([1, 0, 0])  # the target grid starts one voxel further along i
    target = Geometry(g.shape, g.spacing_mm, shifted_origin, g.direction_ras)
    out = resample(oblique_volume, target, "nearest")
    np.testing.assert_array_equal(out.array[:-1], oblique_volume.array[1:])
    assert np.all(out.array[-1] == 0)
    same = resample(oblique_volume, g, "linear")
    np.testing.assert_allclose(same.array, oblique_volume.array, atol=1e-6)


def test_linear_resampling_of_an_integer_image_is_not_rounded():
    # A 0/1 uint8 mask halfway between two voxel centres is 0.5 there, not 0 (SimpleITK keeps the pixel type).
    g = Geometry((4, 1, 1), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    mask = Volume(np.array([0, 1, 1, 0], np.uint8).reshape(4, 1, 1), g)
    half_voxel = Geometry((3, 1, 1), (2.0, 2.0, 2.0), (1.0, 0.0, 0.0))
    out = resample(mask, half_voxel, "linear")
    assert out.array.dtype == np.float32
    np.testing.assert_allclose(out.array.ravel(), [0.5, 1.0, 0.5], atol=1e-6)
    assert resample(mask, g, "nearest").array.dtype == np.uint8


def test_reorientation_for_display(oblique_volume):
    array, spacing, to_display = reorient_to_ras_axes(oblique_volume)
    # The flipped first axis (pointing to patient left) is drawn reversed along R.
    assert array.shape == (7, 9, 5) and spacing == (0.9, 1.3, 3.0)
    assert array[0, 0, 0] == oblique_volume.array[6, 0, 0]
    np.testing.assert_allclose(to_display([6, 0, 0]), [0, 0, 0])


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="--wm: file not found"):
        read_volume(tmp_path / "absent.nii.gz", "--wm")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="--gm: cannot read"):
        read_volume(garbage, "--gm")
    with pytest.raises(InputError, match="unsupported extension"):
        write_volume(Volume.from_array(np.zeros((2, 2, 2))), tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_bad_volumes():
    with pytest.raises(InputError, match="3D"):
        Volume.from_array(np.zeros((3, 3)))
    with pytest.raises(InputError, match="spacing"):
        Volume.from_array(np.zeros((3, 3, 3)), spacing_mm=(1, 0, 1))


def test_bundled_atlas_is_a_plausible_brain():
    atlas = load_atlas()
    g = atlas.wm.geometry
    assert g.spacing_mm == (1.5, 1.5, 1.5)
    for v in (atlas.gm, atlas.csf, atlas.t1, atlas.brain_mask):
        assert v.geometry.is_close(g)
    total = atlas.wm.array + atlas.gm.array + atlas.csf.array
    assert total.max() <= 1.0 + 3 / 255
    ml = g.voxel_volume_ml
    # MNI space is ~10-15% larger than an average adult brain: the bundled maps hold 674 mL WM and 1012 mL GM.
    # Loose bounds catch a broken derivation (wrong scaling, wrong spacing, a map swapped).
    assert 550 < atlas.wm.array.sum() * ml < 800
    assert 850 < atlas.gm.array.sum() * ml < 1150
    assert (atlas.gm.array * atlas.brain_mask.array).sum() > 0.95 * atlas.gm.array.sum()
    # MNI origin (RAS 0, 0, 0, near the anterior commissure) is inside the brain and in the middle of the grid.
    centre = g.ras_to_index([0, 0, 0])
    assert atlas.brain_mask.array[tuple(np.rint(centre).astype(int))] == 1.0
    # The left hemisphere (x < 0 in RAS) holds about half the white matter (the atlas is symmetric).
    x = g.index_to_ras(np.stack(np.nonzero(atlas.wm.array > 0.5), axis=1))[:, 0]
    assert 0.45 < np.mean(x < 0) < 0.55


def test_bias_correction_flattens_a_smooth_bias_and_leaves_a_flat_image_alone():
    import SimpleITK as sitk

    from TumorPersonalizationLib.imaging.bias_field import correct_bias

    shape = (40, 44, 36)
    idx = np.indices(shape, dtype=np.float32)
    inside = sum(((idx[a] - (n - 1) / 2) / (0.4 * n)) ** 2 for a, n in enumerate(shape)) < 1.0
    flat = np.where(inside, 100.0, 0.0).astype(np.float32)
    bias = 1 + 0.4 * (idx[0] / (shape[0] - 1) - 0.5) * 2  # 0.6 at one side, 1.4 at the other

    def image(array):
        out = sitk.GetImageFromArray(array)
        out.SetSpacing((2.0, 2.0, 2.0))
        return out

    mask = image(inside.astype(np.uint8))
    corrected, spread = correct_bias(image(flat * bias), mask=mask)
    values = sitk.GetArrayViewFromImage(corrected)[inside]
    assert spread > 1.3 and values.std() / values.mean() < 0.25 * (flat * bias)[inside].std() / 100.0
    unchanged, flat_spread = correct_bias(image(flat), mask=mask)
    assert flat_spread < 1.05 and np.array_equal(sitk.GetArrayViewFromImage(unchanged), flat)
    tiny = np.zeros(shape, np.uint8)
    tiny[20, 20, 20] = 1
    assert correct_bias(image(flat), mask=image(tiny))[1] == 1.0  # too little to fit: returned as it is
