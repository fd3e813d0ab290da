"""MRML nodes <-> the Lib's :class:`~TumorPersonalizationLib.imaging.volume.Volume` (array + RAS geometry).

The only place where Slicer's array order meets the Lib's: ``slicer.util.arrayFromVolume`` returns ``[k, j, i]``,
``Volume.array`` is ``[i, j, k]``; both describe positions with the node's IJK-to-RAS matrix (RAS millimetres).
Needs ``slicer`` (MRML, vtkSegmentationCore) but no Qt, so it runs headless and in slicer-core.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging.io import resample
from TumorPersonalizationLib.imaging.volume import Geometry, Volume


def nodeLabel(node) -> str:
    """How messages name a node: its name in quotes."""
    return f"'{node.GetName()}'"


def geometryFromMatrix(ijkToRas: np.ndarray, shape) -> Geometry:
    """Geometry from a 4x4 IJK-to-RAS matrix (mm) and the grid shape (ni, nj, nk)."""
    ijkToRas = np.asarray(ijkToRas, dtype=np.float64)
    columns = ijkToRas[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    return Geometry(shape, spacing, ijkToRas[:3, 3], columns / spacing)


def _requireNoTransform(node) -> None:
    # The Lib knows nothing of MRML transforms; a node under one would be placed where it is not shown.
    if node.GetParentTransformNode() is not None:
        raise InputError(f"{nodeLabel(node)} is under the transform '{node.GetParentTransformNode().GetName()}': "
                         f"harden the transform first (Data module, right-click > Harden transform)")


def geometryOfVolumeNode(node) -> Geometry:
    """Geometry of a volume node's voxel grid (RAS, from its IJK-to-RAS matrix)."""
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume {nodeLabel(node)} has no image data")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return geometryFromMatrix(slicer.util.arrayFromVTKMatrix(matrix), image.GetDimensions())


def volumeFromNode(node) -> Volume:
    """A copy of a scalar or labelmap volume node as a :class:`Volume` indexed ``[i, j, k]``."""
    if node is None:
        raise InputError("no volume given")
    _requireNoTransform(node)
    geometry = geometryOfVolumeNode(node)
    array = slicer.util.arrayFromVolume(node)  # [k, j, i], a view of the node's memory
    if array.ndim != 3:
        raise InputError(f"volume {nodeLabel(node)} must be a 3D scalar volume, got an array of shape {array.shape}")
    return Volume(np.ascontiguousarray(np.transpose(array, (2, 1, 0))), geometry)


def onGrid(volume: Volume, reference: Geometry, interpolation: str, name: str, notes: list) -> Volume:
    """``volume`` on the ``reference`` grid: itself when already there, else resampled, with a note saying so."""
    if volume.geometry.is_close(reference):
        return volume.like(volume.array) if volume.geometry == reference else Volume(volume.array, reference)
    notes.append(f"{name} lies on a different grid ({volume.geometry.describe()}) than the T1 "
                 f"({reference.describe()}): resampled onto the T1 grid ({interpolation} interpolation)")
    return resample(volume, reference, interpolation)


def _orientedImageGeometry(geometry: Geometry) -> "slicer.vtkOrientedImageData":
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*geometry.shape)
    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(geometry.affine))
    return image


def orientedImageFromMask(mask: Volume) -> "slicer.vtkOrientedImageData":
    """A binary (uint8) vtkOrientedImageData with the mask's geometry, for segmentation segments."""
    image = _orientedImageGeometry(mask.geometry)
    # VTK stores x (i) fastest: Fortran order of the [i, j, k] array.
    flat = np.ravel(mask.array.astype(np.uint8), order="F")
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    return image


def _arrayFromOrientedImage(image, shape) -> np.ndarray:
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return np.reshape(flat, shape, order="F")


def segmentationMask(node, reference: Geometry) -> Volume:
    """The union of all segments of a segmentation node, rasterised (nearest neighbour) onto ``reference``.

    The node is not modified: when it has no binary-labelmap representation yet, a copy of its segmentation is
    converted instead.
    """
    _requireNoTransform(node)
    segmentation = node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        raise InputError(f"segmentation {nodeLabel(node)} has no segment: draw the lesion first "
                         f"(Segment Editor) or choose another node")
    labelmapName = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if not segmentation.ContainsRepresentation(labelmapName):
        copy = slicer.vtkSegmentation()
        copy.DeepCopy(segmentation)
        if not copy.CreateRepresentation(labelmapName):
            raise InputError(f"segmentation {nodeLabel(node)} cannot be converted to a binary labelmap")
        segmentation = copy
    union = np.zeros(reference.shape, dtype=bool)
    for index in range(segmentation.GetNumberOfSegments()):
        labelmap = _segmentLabelmap(segmentation, segmentation.GetNthSegmentID(index))
        if labelmap is not None:
            union |= _labelmapOnGrid(labelmap, reference) > 0
    return Volume(union.astype(np.uint8), reference)


def _labelmapOnGrid(labelmap, reference: Geometry) -> np.ndarray:
    """A vtkOrientedImageData resampled (nearest neighbour) onto the whole ``reference`` grid, as [i, j, k]."""
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, _orientedImageGeometry(reference), resampled, False, False)
    extent = resampled.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return np.zeros(reference.shape, np.uint8)  # empty segment, or wholly outside the grid
    # The resampled image covers only the segment's extent; pad (or crop) it to the full grid.
    pad = vtk.vtkImageConstantPad()
    pad.SetInputData(resampled)
    pad.SetOutputWholeExtent(0, reference.shape[0] - 1, 0, reference.shape[1] - 1, 0, reference.shape[2] - 1)
    pad.SetConstant(0)
    pad.Update()
    return _arrayFromOrientedImage(pad.GetOutput(), reference.shape)


def _segmentLabelmap(segmentation, segmentId):
    """One segment's binary labelmap (values 0/1) as a new vtkOrientedImageData, or None when it is empty."""
    segment = segmentation.GetSegment(segmentId)
    labelmapName = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    shared = segment.GetRepresentation(labelmapName)
    if shared is None:
        return None
    # Segments may share one labelmap layer with different label values: keep only this segment's value.
    threshold = vtk.vtkImageThreshold()
    threshold.SetInputData(shared)
    value = segment.GetLabelValue()
    threshold.ThresholdBetween(value, value)
    threshold.SetInValue(1)
    threshold.SetOutValue(0)
    threshold.SetOutputScalarTypeToUnsignedChar()
    threshold.Update()
    out = slicer.vtkOrientedImageData()
    out.ShallowCopy(threshold.GetOutput())
    matrix = vtk.vtkMatrix4x4()
    shared.GetImageToWorldMatrix(matrix)
    out.SetImageToWorldMatrix(matrix)
    return out


def maskFromNode(node, reference: Geometry, name: str, notes: list) -> Volume:
    """A binary mask on ``reference`` from a segmentation node (all segments) or a labelmap node (label > 0)."""
    if node is None:
        raise InputError(f"{name}: no node selected (a segmentation or a labelmap volume is required)")
    if node.IsA("vtkMRMLSegmentationNode"):
        mask = segmentationMask(node, reference)
    elif node.IsA("vtkMRMLLabelMapVolumeNode"):
        labels = volumeFromNode(node)
        mask = onGrid(labels.like((labels.array > 0).astype(np.uint8)), reference, "nearest",
                      f"{name} {nodeLabel(node)}", notes)
    else:
        raise InputError(f"{name} {nodeLabel(node)} is a {node.GetClassName()}: use a segmentation or a labelmap "
                         f"volume")
    if not mask.array.any():
        raise InputError(f"{name} {nodeLabel(node)} has no voxel inside the T1 volume's grid: is it empty, or "
                         f"drawn on another image?")
    return mask


def addVolumeNode(volume: Volume, name: str, className: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in the scene holding a copy of ``volume`` in its geometry, with display nodes."""
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    node = slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.geometry.affine))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    node.CreateDefaultDisplayNodes()
    return node


def addSegment(segmentationNode, mask: Volume, name: str, color) -> str:
    """Add ``mask`` (binary Volume) as a new segment; returns the segment ID."""
    segmentId = segmentationNode.GetSegmentation().AddEmptySegment("", name, list(color))
    if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            orientedImageFromMask(mask), segmentationNode, segmentId):
        raise RuntimeError(f"could not store the segment {name}")
    return segmentId


def segmentMask(segmentationNode, segmentId: str, reference: Geometry) -> Volume:
    """One segment of a segmentation node as a binary Volume on ``reference`` (for checks and exports)."""
    labelmap = _segmentLabelmap(segmentationNode.GetSegmentation(), segmentId)
    if labelmap is None:
        return Volume(np.zeros(reference.shape, np.uint8), reference)
    return Volume((_labelmapOnGrid(labelmap, reference) > 0).astype(np.uint8), reference)
