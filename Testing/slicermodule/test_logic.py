"""MRML tier: the module's Logic on slicer-core with nodes in a non-trivial geometry.

One small TMCMC run (32 samples per stage, one worker: ~10 s) is checked voxel by voxel against the Lib (its output
files, and an in-process run on the same data), then saved as .mrb and reloaded. Learn-Morph-Infer slots in by
changing ``METHOD`` once the CLI accepts ``--method lmi``.
"""
from pathlib import Path

import numpy as np
import pytest
from slicer_fixtures import module, scene  # noqa: F401 (fixtures; also puts the module on sys.path)
import vtk

from TumorPersonalizationLib.imaging.io import read_volume

from cases import assert_unchanged, make_case, oblique_geometry, segmentation_from_mask, snapshot

METHOD = "tmcmc"
SMALL = dict(method=METHOD, tmcmcSamples=32, workers=1, randomSeed=0)


def _settings(module, **overrides):
    return module.PersonalizationSettings(**{**SMALL, **overrides})


def _inputs(module, case, **overrides):
    return module.PersonalizationInputs(**{**case.nodes, **overrides})


def _node_at_ras(node, ras):
    """The node's voxel value at a RAS position, located with Slicer's own RAS-to-IJK matrix."""
    import slicer

    matrix = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(matrix)
    ijk = np.rint(slicer.util.arrayFromVTKMatrix(matrix) @ np.append(ras, 1.0))[:3].astype(int)
    return slicer.util.arrayFromVolume(node)[ijk[2], ijk[1], ijk[0]]


def _on_grid(node, geometry):
    """A volume node's voxels on ``geometry`` (nearest neighbour: exact when the grids share voxel centres)."""
    from TumorPersonalizationLib.imaging.io import resample
    from TumorPersonalizationModuleLib.nodes import volumeFromNode

    return resample(volumeFromNode(node), geometry, "nearest").array


def _segment_on_grid(segmentation, segment_name, reference_node):
    """A segment exported by Slicer's segmentations logic onto a reference volume's grid, as [i, j, k]."""
    import slicer

    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    assert segment_id, f"no segment named {segment_name}"
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        assert slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            segmentation, [segment_id], labelmap, reference_node)
        return np.transpose(slicer.util.arrayFromVolume(labelmap), (2, 1, 0)) > 0
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)


def test_personalization_lands_in_the_right_place_and_survives_mrb(module, tmp_path):
    import slicer

    from TumorPersonalizationLib.methods import tmcmc
    from TumorPersonalizationLib.personalization import Case

    case = make_case()
    logic = module.TumorPersonalizationLogic()
    parameterNode = logic.getParameterNode()
    for key, node in case.nodes.items():
        setattr(parameterNode, key, node)
    parameterNode.method = module.PersonalizationMethod(METHOD)
    parameterNode.tmcmcSamples, parameterNode.workers = 32, 1
    before = snapshot(case.nodes)
    progress = []
    result = logic.runFromParameterNode(parameterNode, progress=lambda f, m: progress.append((f, m)),
                                        workDir=tmp_path / "work", timeoutS=300)
    assert_unchanged(before, snapshot(case.nodes))
    assert progress[-1][0] == 1.0 and [f for f, _ in progress] == sorted(f for f, _ in progress)
    out = tmp_path / "work" / "out"

    # The files the Lib read are the nodes' voxels in the nodes' geometry (segmentation rasterised exactly).
    exported = read_volume(tmp_path / "work" / "inputs" / "t1gd.nii.gz")
    assert exported.geometry.is_close(case.geometry)
    assert np.array_equal(exported.array > 0, case.t1gd.array > 0)
    assert np.array_equal(read_volume(tmp_path / "work" / "inputs" / "flair.nii.gz").array, case.flair.array)

    # Density node == the Lib's density, voxel for voxel, and at the same RAS positions (Slicer's own matrices).
    lib_density = read_volume(out / "density.nii.gz")
    node_array = np.transpose(slicer.util.arrayFromVolume(result.density), (2, 1, 0))
    assert np.array_equal(node_array, lib_density.array)
    hottest = np.unravel_index(np.argmax(lib_density.array), lib_density.shape)
    ras = lib_density.geometry.index_to_ras(hottest)
    assert _node_at_ras(result.density, ras) == pytest.approx(lib_density.array[hottest])
    assert _node_at_ras(result.density, ras) > 0.5

    # The Lib run in-process on the same files gives the same density. (Not on the original arrays: NIfTI keeps
    # the affine in float32, and a 1e-7 mm shift of the prior's seed box already sends the sampler elsewhere.)
    files = {name: read_volume(tmp_path / "work" / "inputs" / f"{name}.nii.gz") for name in
             ("wm", "gm", "csf", "t1gd", "flair")}
    patient = Case.from_volumes(files["t1gd"], files["flair"], wm=files["wm"], gm=files["gm"], csf=files["csf"])
    direct = tmcmc.personalize(patient, tmcmc.Settings(samples=32, seed=0, workers=1))
    assert np.allclose(node_array, direct.density.array, atol=1e-6)

    # CTVs: Slicer's own export of each segment onto the T1 grid equals the Lib's plan files.
    standard = _segment_on_grid(result.ctv, "Standard CTV (15 mm)", case.nodes["t1Volume"])
    personalized = _segment_on_grid(result.ctv, "Personalized CTV (iso-volume)", case.nodes["t1Volume"])
    assert np.array_equal(standard, read_volume(out / "ctv_standard.nii.gz").array > 0)
    assert np.array_equal(personalized, read_volume(out / "ctv_model.nii.gz").array > 0)
    ml = case.geometry.voxel_volume_ml
    assert result.volumesMl["Standard CTV (15 mm)"] == pytest.approx(standard.sum() * ml)
    assert result.volumesMl["T1Gd core"] == pytest.approx(case.t1gd.array.sum() * ml)

    # Table: parameters with intervals, then volumes; posterior marginals as plots.
    table = result.table.GetTable()
    quantities = [table.GetValueByName(r, "Quantity").ToString() for r in range(table.GetNumberOfRows())]
    assert {"mu1", "mu2", "Dw", "rho", "T", "x", "y", "z"} <= set(quantities)
    row = quantities.index("mu1")
    low, high = (table.GetValueByName(row, c).ToDouble() for c in ("CI95 low", "CI95 high"))
    assert low <= table.GetValueByName(row, "Estimate").ToDouble() <= high
    assert "Standard CTV (15 mm) volume" in quantities
    assert len(result.charts) == len(result.report["marginals"]) >= 11
    assert result.density.GetDisplayNode().GetApplyThreshold()

    # Saved as .mrb and reloaded into a fresh application: outputs and the parameter node come back.
    mrb = tmp_path / "scene.mrb"
    assert slicer.mrmlScene.WriteToMRB(str(mrb))
    import slicer_standin

    fresh = slicer_standin.install()
    assert fresh.ReadFromMRB(str(mrb))
    reloaded = module.TumorPersonalizationLogic().getParameterNode()
    assert reloaded.densityVolume is not None and reloaded.ctvSegmentation is not None
    # The reader may store the grid in another axis order (flipped k); compare at the same physical voxels.
    assert np.array_equal(_on_grid(reloaded.densityVolume, case.geometry), lib_density.array)
    assert reloaded.ctvSegmentation.GetSegmentation().GetNumberOfSegments() == 3
    from TumorPersonalizationModuleLib.nodes import segmentMask

    segment_id = reloaded.ctvSegmentation.GetSegmentation().GetSegmentIdBySegmentName("Standard CTV (15 mm)")
    assert np.array_equal(segmentMask(reloaded.ctvSegmentation, segment_id, case.geometry).array > 0, standard)
    assert reloaded.parameterTable.GetNumberOfRows() == len(quantities)
    assert reloaded.method.value == METHOD and reloaded.tmcmcSamples == 32


def test_parameter_node_round_trip(module, tmp_path):
    import slicer

    case = make_case(days=120.0)
    logic = module.TumorPersonalizationLogic()
    node = logic.getParameterNode()
    assert node.method == module.PersonalizationMethod['lmi'] and node.marginMm == 15.0  # defaults
    values = dict(method=module.PersonalizationMethod['tmcmc'], tmcmcSamples=512, tmcmcFast=True, workers=3,
                  randomSeed=7, marginMm=20.5, planMode=module.PlanMode.PROBABILISTIC, **case.nodes)
    for key, value in values.items():
        setattr(node, key, value)
    with pytest.raises(ValueError):
        node.marginMm = 80.0
    with pytest.raises(TypeError):
        node.t1gdLesion = case.nodes["t1Volume"]  # a plain scalar volume is no lesion
    settings = logic.settingsFromParameterNode(node)
    assert (settings.method, settings.tmcmcSamples, settings.planMode) == ("tmcmc", 512, "probabilistic")

    path = tmp_path / "scene.mrml"
    slicer.mrmlScene.SetURL(str(path))
    slicer.mrmlScene.SetRootDirectory(str(tmp_path))
    assert slicer.mrmlScene.Commit()
    import slicer_standin

    fresh = slicer_standin.install()
    fresh.SetURL(str(path))
    assert fresh.Import()
    again = module.TumorPersonalizationLogic().getParameterNode()
    for key, value in values.items():
        if hasattr(value, "GetName"):
            assert getattr(again, key).GetName() == value.GetName(), key
        else:
            assert getattr(again, key) == value, key


def _start_error(module, logic, inputs, settings):
    with pytest.raises(module.InputError) as info:
        logic.start(inputs, settings)
    return str(info.value)


def test_bad_inputs_give_clear_messages_and_touch_nothing(module):
    import slicer

    case = make_case()
    logic = module.TumorPersonalizationLogic()
    settings = _settings(module)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Empty segmentation")
    far = oblique_geometry()
    far = type(far)(far.shape, far.spacing_mm, (300.0, 300.0, 300.0), far.direction_ras)
    from TumorPersonalizationLib.imaging.volume import Volume

    from cases import add_volume

    elsewhere = add_volume(Volume(case.t1gd.array, far), "T1Gd elsewhere", "vtkMRMLLabelMapVolumeNode")
    before = snapshot({**case.nodes, "elsewhere": elsewhere})
    count = slicer.mrmlScene.GetNumberOfNodes()
    cases = [
        (dict(t1Volume=None), "T1 volume: no node selected"),
        (dict(t1gdLesion=None), "T1Gd lesion: no node selected"),
        (dict(flairLesion=empty), "segmentation 'Empty segmentation' has no segment"),
        (dict(t1gdLesion=elsewhere), "T1Gd lesion 'T1Gd elsewhere' has no voxel inside the T1 volume's grid"),
        (dict(gmMap=None), "select both a WM and a GM probability map"),
    ]
    for overrides, message in cases:
        assert message in _start_error(module, logic, _inputs(module, case, **overrides), settings), overrides
    assert logic.methodUnavailableReason("lmi") is None  # the CLI accepts --method lmi
    assert_unchanged(before, snapshot({**case.nodes, "elsewhere": elsewhere}))
    assert slicer.mrmlScene.GetNumberOfNodes() == count


def test_different_grids_are_resampled_and_said_so(module):
    """A labelmap on another (overlapping) grid is resampled onto the T1 grid, with a note naming it."""
    import slicer

    from TumorPersonalizationLib.imaging.io import resample
    from TumorPersonalizationLib.imaging.volume import Geometry

    from cases import add_volume

    case = make_case()
    finer = Geometry((52, 56, 40), (1.25, 1.1, 1.5), case.geometry.index_to_ras([-0.25, -0.25, -0.25]),
                     case.geometry.direction_ras)
    flair_fine = add_volume(resample(case.flair, finer, "nearest"), "FLAIR fine", "vtkMRMLLabelMapVolumeNode")
    logic = module.TumorPersonalizationLogic()
    job = logic.start(_inputs(module, case, flairLesion=flair_fine), _settings(module, tmcmcSamples=2048))
    try:
        assert any("FLAIR lesion 'FLAIR fine' lies on a different grid" in note and "resampled onto the T1 grid"
                   in note for note in job.notes)
        exported = read_volume(job.workDir / "inputs" / "flair.nii.gz")
        assert exported.geometry.is_close(case.geometry)
        agreement = np.mean((exported.array > 0) == (case.flair.array > 0))
        assert agreement > 0.98
    finally:
        logic.cancel(job)
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode").GetName() == "T1Gd segmentation"


def test_cli_failure_names_the_nodes(module):
    """An error found by the Lib (FLAIR smaller than T1Gd) comes back naming the nodes, and adds nothing."""
    import slicer

    case = make_case()
    logic = module.TumorPersonalizationLogic()
    swapped = segmentation_from_mask(case.t1gd.like(_small_blob(case).astype(np.uint8)), "Small FLAIR")
    count = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(RuntimeError) as info:
        logic.run(_inputs(module, case, flairLesion=swapped), _settings(module), timeoutS=120)
    message = str(info.value)
    assert "FLAIR lesion 'Small FLAIR'" in message and "smaller than the T1Gd" in message
    assert "/tmp" not in message and "nii.gz" not in message
    assert slicer.mrmlScene.GetNumberOfNodes() == count


def _small_blob(case):
    blob = np.zeros(case.geometry.shape, bool)
    i, j, k = np.argwhere(case.t1gd.array > 0)[0]
    blob[i, j, k] = True
    return blob


def _live_processes_in_group(group):
    """PIDs of process group ``group`` that still run (zombies waiting for a reaper do not count), Linux only."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            live.append(int(stat.parent.name))
    return live


def test_cancel_in_the_middle_stops_every_process_and_leaves_the_scene(module):
    import slicer

    case = make_case()
    logic = module.TumorPersonalizationLogic()
    before = snapshot(case.nodes)
    count = slicer.mrmlScene.GetNumberOfNodes()
    job = logic.start(_inputs(module, case), _settings(module, tmcmcSamples=512, workers=2))
    import time

    started = time.monotonic()
    while job.cli.progress <= 0.0 and not job.cli.poll() and time.monotonic() - started < 60:
        time.sleep(0.1)
    assert not job.cli.finished, "the run ended before it could be cancelled"
    assert 0.0 < job.cli.progress < 1.0
    group = job.cli._process.pid
    logic.cancel(job)
    assert job.cli.finished and job.cli.cancelled
    assert _live_processes_in_group(group) == [], "the CLI or one of its worker processes is still running"
    assert not job.workDir.exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        logic.finish(job)
    assert slicer.mrmlScene.GetNumberOfNodes() == count
    assert_unchanged(before, snapshot(case.nodes))


def test_module_description_and_its_own_test_class(module):
    """The module registers like a Slicer module, and its Test class (run by Slicer's Reload & Test) passes."""
    import slicer_standin.ScriptedLoadableModule as slm

    parent = slm.makeParent(module.__file__)
    module.TumorPersonalization(parent)
    assert parent.title == "Tumor Personalization" and parent.categories == ["Radiotherapy"]
    for citation in ("Ezhov", "Learn-Morph-Infer", "Transitional Markov chain Monte Carlo"):
        assert citation in parent.helpText
    assert "ICBM" in parent.acknowledgementText
    module.TumorPersonalizationTest().runTest()
