"""Small synthetic patients as MRML nodes in a non-trivial geometry (shared by the Slicer-tier tests)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from TumorPersonalizationLib.imaging.tissue import TissueMaps
from TumorPersonalizationLib.imaging.volume import Geometry, Volume
from TumorPersonalizationLib.synthetic import synthetic_case


def phantom_tissue(shape):
    """WM ellipsoid in a GM shell, CSF outside the brain (float32 arrays summing to at most 1)."""
    idx = np.indices(shape, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2.0
    r = np.sqrt(sum(((idx[a] - centre[a]) / (0.45 * shape[a])) ** 2 for a in range(3)))
    wm = np.clip((0.8 - r) / 0.1, 0, 1)
    brain = np.clip((1.0 - r) / 0.1, 0, 1)
    csf = np.clip(1.0 - brain, 0, 1) * (r < 1.1)
    return wm.astype(np.float32), (brain - wm).astype(np.float32), csf.astype(np.float32)


def oblique_geometry(shape=(26, 28, 20)) -> Geometry:
    """Anisotropic voxels (2.5 x 2.2 x 3 mm), axes rotated 20 degrees about S and k flipped, origin off zero."""
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Geometry(shape, (2.5, 2.2, 3.0), (-30.0, 12.0, 40.0), rotation @ np.diag([1.0, 1.0, -1.0]))


@dataclass
class NodeCase:
    geometry: Geometry
    tissue: TissueMaps
    t1gd: Volume
    flair: Volume
    t1: Volume
    nodes: dict


def to_node_array(volume: Volume) -> np.ndarray:
    """[i, j, k] -> Slicer's [k, j, i]."""
    return np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0)))


def add_volume(volume: Volume, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    import slicer

    return slicer.util.addVolumeFromArray(to_node_array(volume), volume.geometry.affine, name, class_name)


def segmentation_from_mask(mask: Volume, name: str):
    """A segmentation node made the way a user makes one: a labelmap imported by Slicer's segmentations logic."""
    import slicer

    labelmap = add_volume(mask, name + " labelmap", "vtkMRMLLabelMapVolumeNode")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, node):
        raise RuntimeError("labelmap import failed")
    slicer.mrmlScene.RemoveNode(labelmap)
    return node


def make_case(geometry: Geometry | None = None, days: float = 150.0) -> NodeCase:
    """Tumor grown in a phantom head; T1Gd as a segmentation node, FLAIR as a labelmap, tissue maps as volumes."""
    geometry = geometry or oblique_geometry()
    wm, gm, csf = phantom_tissue(geometry.shape)
    tissue = TissueMaps(Volume(wm, geometry), Volume(gm, geometry), Volume(csf, geometry))
    seed = tuple(geometry.index_to_ras(np.round(np.asarray(geometry.shape) * (0.35, 0.5, 0.5))))
    case = synthetic_case(tissue, 0.3, 0.05, days, seed)
    t1 = Volume((100 * wm + 60 * gm + 10 * csf).astype(np.float32), geometry)
    nodes = {"t1Volume": add_volume(t1, "T1"),
             "t1gdLesion": segmentation_from_mask(case.t1gd, "T1Gd segmentation"),
             "flairLesion": add_volume(case.flair, "FLAIR labelmap", "vtkMRMLLabelMapVolumeNode"),
             "wmMap": add_volume(tissue.wm, "WM"), "gmMap": add_volume(tissue.gm, "GM"),
             "csfMap": add_volume(tissue.csf, "CSF")}
    return NodeCase(geometry, tissue, case.t1gd, case.flair, t1, nodes)


def snapshot(nodes) -> dict:
    """What must not change in input nodes: voxel arrays, geometry, segment count, modification time."""
    import slicer
    import vtk

    out = {}
    for key, node in nodes.items():
        if node is None:
            continue
        if node.IsA("vtkMRMLSegmentationNode"):
            out[key] = (node.GetSegmentation().GetNumberOfSegments(), node.GetMTime())
        else:
            matrix = vtk.vtkMatrix4x4()
            node.GetIJKToRASMatrix(matrix)
            out[key] = (slicer.util.arrayFromVolume(node).copy(), slicer.util.arrayFromVTKMatrix(matrix),
                        node.GetMTime())
    return out


def assert_unchanged(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        for a, b in zip(before[key], after[key]):
            assert np.array_equal(a, b), f"input {key} was modified"
