"""The shipped example patient (SRI24 anatomy, synthetic tumor) on a coarser grid with a flipped first axis and
the origin at the far corner, as another scanner would store it: the case for end-to-end tests of
Learn-Morph-Infer through the Lib and through the Slicer module."""
import numpy as np

from TumorPersonalizationLib.imaging import Geometry, read_volume, resample
from TumorPersonalizationLib.imaging.io import resample_smooth
from TumorPersonalizationLib.resources import resources_dir

EXAMPLE = resources_dir() / "ExamplePatient"


def example_patient(spacing_mm: float = 2.0) -> dict:
    """Volumes ``t1``, ``t1gd``, ``flair`` (uint8 0/1) and ``truth`` (the true density in [0, 1]) on one grid."""
    t1 = read_volume(EXAMPLE / "t1.nii.gz")
    g = t1.geometry
    direction = g.direction_matrix @ np.diag([-1.0, 1.0, 1.0])
    shape = np.ceil(np.asarray(g.shape) * np.asarray(g.spacing_mm) / spacing_mm).astype(int)
    grid = Geometry(tuple(shape), (spacing_mm,) * 3, tuple(g.index_to_ras([g.shape[0] - 1, 0, 0])),
                    tuple(direction.ravel()))
    out = {"t1": resample_smooth(t1, grid)}
    for name in ("t1gd", "flair"):
        mask = read_volume(EXAMPLE / f"{name}.nii.gz")
        fraction = resample_smooth(mask.like(mask.array.astype(np.float32)), grid)
        out[name] = fraction.like((fraction.array >= 0.5).astype(np.uint8))
    truth = read_volume(EXAMPLE / "density_truth.nii.gz")
    out["truth"] = resample(truth.like(truth.array.astype(np.float32) / np.float32(255)), grid)
    return out
