"""The CLI's output folder -> new MRML nodes: density overlay, CTV segmentation, parameter table, posterior plots.

Every node made here is recorded in a :class:`ResultNodes`, so a failure half-way removes them all and the scene is
left as it was.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from TumorPersonalizationLib.imaging.io import read_volume

from .nodes import addSegment, addVolumeNode

# Densities below this are transparent in the overlay (the personalized plans' lowest threshold is 0.01).
DENSITY_DISPLAY_THRESHOLD = 0.01
# Preferred colour maps for the density, first found wins (the file-based ones exist only in the application).
DENSITY_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLPETProceduralColorNodePET-Heat",
                          "vtkMRMLColorTableNodeIron")
STANDARD_COLOR = (0.1, 0.8, 0.95)      # cyan, as in the Lib's plan.png
PERSONALIZED_COLOR = (0.3, 0.95, 0.2)  # lime
CORE_COLOR = (0.95, 0.2, 0.85)         # magenta
VOLUME_TAG = "TumorPersonalization.VolumeMl"

PLAN_FILES = {"isoVolume": ("ctv_model.nii.gz", "iso-volume"),
              "probabilistic": ("ctv_probabilistic.nii.gz", "probabilistic")}


@dataclass
class ResultNodes:
    """The nodes one personalization added to the scene."""

    density: object = None
    ctv: object = None
    table: object = None
    marginalsTable: object = None
    charts: list = field(default_factory=list)
    others: list = field(default_factory=list)  # display, legend, plot series nodes, folder item
    report: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    volumesMl: dict = field(default_factory=dict)

    def nodes(self) -> list:
        main = [self.density, self.ctv, self.table, self.marginalsTable, *self.charts]
        return [n for n in main + self.others if n is not None]

    def remove(self) -> None:
        """Remove every node made so far (failure or cancel while loading)."""
        for node in reversed(self.nodes()):
            if node.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(node)


def _track(result: ResultNodes, node):
    result.others.append(node)
    return node


def loadDensity(outDir: Path, name: str, result: ResultNodes):
    """The density (``density.nii.gz``) as a scalar volume shown as a colour overlay with a legend."""
    density = read_volume(outDir / "density.nii.gz", "density")
    result.density = addVolumeNode(density.like(density.array.astype(np.float32)), name)
    styleDensity(result.density, result)
    return result.density


def loadTissueMaps(outDir: Path, name: str, result: ResultNodes) -> list:
    """The tissue maps the method segmented from the T1 (``tissue_*.nii.gz``, when it made them) as scalar volumes,
    so the user can inspect them and select them (or their own) as WM / GM / CSF maps for the next run."""
    from TumorPersonalizationLib.personalization.result import TISSUE_FILES

    loaded = []
    for tissue, filename in TISSUE_FILES.items():
        if (outDir / filename).is_file():
            volume = read_volume(outDir / filename, filename)
            loaded.append(_track(result, addVolumeNode(volume, f"{name} {tissue.upper()}")))
    return loaded


def loadMassEffect(outDir: Path, name: str, result: ResultNodes) -> list:
    """With the mass-effect model: the predicted deformation (``displacement.nii.gz``) as a grid transform node,
    read as Slicer reads a displacement-field file, so that applying it to the atlas or the T1 (Transforms module,
    or a volume's parent transform) shows the predicted shift; and the deformed tissue maps as scalar volumes."""
    from TumorPersonalizationLib.personalization.result import DEFORMED_TISSUE_FILES, DISPLACEMENT_FILE

    loaded = []
    if (outDir / DISPLACEMENT_FILE).is_file():
        node = _track(result, slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode",
                                                                 f"{name} displacement"))
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(str(outDir / DISPLACEMENT_FILE))
        if not storage.ReadData(node):
            raise RuntimeError(f"could not read {outDir / DISPLACEMENT_FILE} as a transform")
        loaded.append(node)
    for tissue, filename in DEFORMED_TISSUE_FILES.items():
        if (outDir / filename).is_file():
            volume = read_volume(outDir / filename, filename)
            loaded.append(_track(result, addVolumeNode(volume, f"{name} deformed {tissue.upper()}")))
    return loaded


def styleDensity(node, result: ResultNodes | None = None) -> None:
    """Colour map 0..1, values below :data:`DENSITY_DISPLAY_THRESHOLD` transparent, and a colour legend."""
    display = node.GetDisplayNode()
    for colorId in DENSITY_COLOR_NODE_IDS:
        if slicer.mrmlScene.GetNodeByID(colorId) is not None:
            display.SetAndObserveColorNodeID(colorId)
            break
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetAutoThreshold(False)
    display.SetLowerThreshold(DENSITY_DISPLAY_THRESHOLD)
    display.SetUpperThreshold(1.0 + 1e-6)
    display.SetApplyThreshold(True)  # outside the threshold range = transparent in slice views
    legend = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorLegendDisplayNode", node.GetName() + " legend")
    legend.SetAndObservePrimaryDisplayNode(display)
    legend.SetTitleText("Tumor cell density")
    legend.SetLabelFormat("%.2f")
    node.AddAndObserveDisplayNodeID(legend.GetID())
    if result is not None:
        _track(result, legend)


def loadPlans(outDir: Path, name: str, planMode: str, marginMm: float, core, result: ResultNodes):
    """Standard and personalized CTV (and the T1Gd core) as segments of one segmentation; volumes in mL."""
    fileName, kind = PLAN_FILES[planMode]
    if not (outDir / fileName).is_file():
        result.notes.append(f"this method writes no {kind} plan; the personalized CTV is the iso-volume plan")
        fileName, kind = PLAN_FILES["isoVolume"]
    standard = read_volume(outDir / "ctv_standard.nii.gz", "standard CTV")
    personalized = read_volume(outDir / fileName, "personalized CTV")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(name))
    result.ctv = node
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(result.density)
    segments = ((f"Standard CTV ({marginMm:g} mm)", standard, STANDARD_COLOR),
                (f"Personalized CTV ({kind})", personalized, PERSONALIZED_COLOR),
                ("T1Gd core", core, CORE_COLOR))
    for label, mask, color in segments:
        if mask is None:
            continue
        segmentId = addSegment(node, mask.like(mask.array > 0), label, color)
        volumeMl = float(np.count_nonzero(mask.array) * mask.geometry.voxel_volume_ml)
        node.GetSegmentation().GetSegment(segmentId).SetTag(VOLUME_TAG, f"{volumeMl:.3f}")
        result.volumesMl[label] = volumeMl
    display = node.GetDisplayNode()
    display.SetVisibility2DFill(False)  # outlines only, so the density overlay stays visible
    display.SetVisibility2DOutline(True)
    return node


def _column(table, name: str, values, numeric: bool):
    array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
    array.SetName(name)
    for value in values:
        array.InsertNextValue(float("nan") if value is None else value) if numeric else array.InsertNextValue(
            str(value))
    table.AddColumn(array)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parameterRows(report: dict, volumesMl: dict) -> list:
    """(quantity, estimate, mean, CI low, CI high, unit) rows from a report: every parameter, then CTV volumes.

    Methods differ in what they report per parameter (a MAP and an interval, or a single value), so missing
    entries stay empty rather than failing.
    """
    rows = []
    for name, entry in report.get("parameters", {}).items():
        if isinstance(entry, dict):
            estimate = _number(entry.get("map", entry.get("value", entry.get("estimate"))))
            interval = entry.get("ci95") or [None, None]
            rows.append((name, estimate, _number(entry.get("mean")), _number(interval[0]), _number(interval[1]),
                         entry.get("unit", "")))
        else:
            rows.append((name, _number(entry), None, None, None, ""))
    for label, volumeMl in volumesMl.items():
        rows.append((f"{label} volume", volumeMl, None, None, None, "mL"))
    return rows


def addParameterTable(report: dict, name: str, result: ResultNodes):
    """A table node with the inferred parameters, their 95 % intervals and the CTV volumes."""
    rows = parameterRows(report, result.volumesMl)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name))
    result.table = table
    columns = list(zip(*rows)) if rows else [[] for _ in range(6)]
    for index, (title, numeric) in enumerate((("Quantity", False), ("Estimate", True), ("Mean", True),
                                              ("CI95 low", True), ("CI95 high", True), ("Unit", False))):
        _column(table.GetTable(), title, columns[index], numeric)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.Modified()
    return table


def addMarginalPlots(report: dict, name: str, result: ResultNodes) -> list:
    """One plot chart per parameter from ``report["marginals"]`` (methods that sample the posterior)."""
    marginals = report.get("marginals") or {}
    if not marginals:
        return []
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name))
    result.marginalsTable = table
    for parameter, entry in marginals.items():
        _column(table.GetTable(), f"{parameter}", entry["centres"], True)
        _column(table.GetTable(), f"{parameter} density", entry["density"], True)
    table.Modified()
    for parameter, entry in marginals.items():
        unit = entry.get("unit", "")
        series = _track(result, slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode",
                                                                   f"{name} {parameter}"))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(parameter)
        series.SetYColumnName(f"{parameter} density")
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} {parameter}")
        result.charts.append(chart)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(f"posterior of {parameter}")
        chart.SetXAxisTitle(f"{parameter} ({unit})" if unit else parameter)
        chart.SetYAxisTitle("probability density")
        chart.SetLegendVisibility(False)
    return result.charts


def readReport(outDir: Path) -> dict:
    path = outDir / "report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def groupInFolder(result: ResultNodes, folderName: str) -> None:
    """Put the result nodes in one subject-hierarchy folder (when the scene has a subject hierarchy)."""
    shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
    if shNode is None:
        return
    folder = shNode.CreateFolderItem(shNode.GetSceneItemID(), folderName)
    for node in [result.density, result.ctv, result.table, result.marginalsTable, *result.charts]:
        if node is not None:
            item = shNode.GetItemByDataNode(node)
            if item:
                shNode.SetItemParent(item, folder)
