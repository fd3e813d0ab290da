"""TumorPersonalization: personalized glioma growth models and the radiotherapy targets they imply, in 3D Slicer.

Everything that computes lives in ``TumorPersonalizationLib`` (pure Python, no Slicer, no Qt). This module converts
MRML nodes to the Lib's arrays with their geometry and back, runs the Lib's command line in a subprocess (so Slicer
stays responsive and Cancel can stop it), and shows the results as MRML nodes.

Scripting from Slicer's Python console (no GUI needed)::

    logic = slicer.util.getModuleLogic("TumorPersonalization")   # or TumorPersonalizationLogic()
    inputs = PersonalizationInputs(t1Volume=t1, t1gdLesion=t1gdSegmentation, flairLesion=flairLabelmap)
    result = logic.run(inputs, PersonalizationSettings(method="tmcmc", tmcmcFast=True))
    result.density, result.ctv, result.table      # new nodes
"""
import enum
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

import slicer
from slicer import (vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode,
                    vtkMRMLTableNode)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


def _addLibToPath():
    # Installed, the Lib sits next to this file; in the source tree it is one folder up.
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent):
        if (folder / "TumorPersonalizationLib" / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return


_addLibToPath()

from TumorPersonalizationLib.errors import InputError  # noqa: E402
from TumorPersonalizationModuleLib import outputs as _outputs  # noqa: E402
from TumorPersonalizationModuleLib import runner as _runner  # noqa: E402

#
# TumorPersonalization
#


class TumorPersonalization(ScriptedLoadableModule):
    """Module description shown in Slicer (Help & Acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Tumor Personalization"
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["TumorPersonalization developers"]
        self.parent.helpText = (
            "Personalizes a Fisher-Kolmogorov glioma growth model (reaction-diffusion in white and grey matter) to "
            "a patient's T1Gd and FLAIR segmentations (and FET-PET), shows the inferred tumor cell density and "
            "turns it into radiotherapy target volumes: the standard CTV (core + margin) and a personalized CTV."
            "<p>Methods: <b>Learn-Morph-Infer</b> (a network infers the growth parameters in atlas space, "
            "under a minute on a CPU; optional refinement) and <b>TMCMC</b> (Bayesian calibration with "
            "Transitional Markov chain Monte Carlo: parameter intervals and posterior marginals; slow).</p>"
            "<p>References: I. Ezhov, <i>Learnable methods for brain tumor model personalization</i>, PhD "
            "dissertation, Technical University of Munich. I. Ezhov et al., <i>Learn-Morph-Infer: a new way of "
            "solving the inverse problem for brain tumor modeling</i>, Medical Image Analysis 83, 2023. "
            "J. Lipkova, P. Angelikopoulos et al., <i>Personalized radiotherapy design for glioblastoma: "
            "integrating mathematical tumor models, multimodal scans and Bayesian inference</i>, IEEE Transactions "
            "on Medical Imaging 38(8), 2019. J. Ching and Y.-C. Chen, <i>Transitional Markov chain Monte Carlo "
            "method for Bayesian model updating, model class selection, and model averaging</i>, Journal of "
            "Engineering Mechanics 133(7), 2007.</p>"
            "<p>Research software: not for clinical use.</p>")
        self.parent.acknowledgementText = (
            "Methods after I. Ezhov's dissertation (TUM) and the papers cited in the help. Bundled atlas: ICBM 2009a "
            "nonlinear symmetric, Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
            "Neurological Institute, McGill University (see Resources/Atlas/NOTICE.txt).")


#
# Parameters
#


class _MethodChoice(enum.Enum):
    @staticmethod
    def label(member):
        return _runner.METHODS[member.value].label


PersonalizationMethod = _MethodChoice("PersonalizationMethod", [(key, key) for key in _runner.METHODS])
"""The method choice: one member per method preset of the Lib's registry (``runner.METHODS``: "lmi",
"lmiRefine", "tmcmc", ...), named and valued by its key."""


class PlanMode(enum.Enum):
    """How the personalized CTV is made from the density."""

    ISO_VOLUME = "isoVolume"
    PROBABILISTIC = "probabilistic"

    @staticmethod
    def label(member):
        return {"isoVolume": "Iso-volume (same volume as the standard CTV)",
                "probabilistic": "Probabilistic (P(c >= 0.01) >= 0.5, TMCMC only)"}[member.value]


LesionNode = Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]


@parameterNodeWrapper
class TumorPersonalizationParameterNode:
    """Inputs, settings and the last run's outputs (saved with the scene).

    t1Volume - the patient's T1 (the grid every input is put on, and the display background).
    t1gdLesion, flairLesion - segmentation (all segments) or labelmap (label > 0) of the T1Gd and FLAIR lesion.
    petVolume - optional FET-PET uptake (TMCMC only).
    wmMap, gmMap, csfMap - optional tissue probability maps; default: the bundled atlas (registered by
        Learn-Morph-Infer; TMCMC needs maps on the patient grid or inputs in atlas space). Given, Learn-Morph-Infer
        simulates in them instead of in the atlas.
    tmcmcSamples, tmcmcFast, workers - TMCMC population per stage, 320-sample fast mode, processes (0: all cores).
    marginMm - standard-CTV margin (mm).  planMode - how the personalized CTV is made.
    """

    t1Volume: vtkMRMLScalarVolumeNode
    t1gdLesion: LesionNode
    flairLesion: LesionNode
    petVolume: vtkMRMLScalarVolumeNode
    wmMap: vtkMRMLScalarVolumeNode
    gmMap: vtkMRMLScalarVolumeNode
    csfMap: vtkMRMLScalarVolumeNode
    method: PersonalizationMethod = PersonalizationMethod[next(iter(_runner.METHODS))]
    tmcmcSamples: Annotated[int, WithinRange(32, 8192)] = 2048
    tmcmcFast: bool = False
    workers: Annotated[int, WithinRange(0, 256)] = 0
    randomSeed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    marginMm: Annotated[float, WithinRange(0.0, 50.0)] = 15.0
    planMode: PlanMode = PlanMode.ISO_VOLUME
    densityVolume: vtkMRMLScalarVolumeNode
    ctvSegmentation: vtkMRMLSegmentationNode
    parameterTable: vtkMRMLTableNode


@dataclass
class PersonalizationInputs:
    """The nodes one personalization reads (never modified)."""

    t1Volume: object = None
    t1gdLesion: object = None
    flairLesion: object = None
    petVolume: object = None
    wmMap: object = None
    gmMap: object = None
    csfMap: object = None


@dataclass
class PersonalizationSettings:
    """Method and settings; ``method`` is a key of ``runner.METHODS`` ("lmi", "lmiRefine", "tmcmc")."""

    method: str = "lmi"
    tmcmcSamples: int = 2048
    tmcmcFast: bool = False
    workers: int = 0
    randomSeed: int = 0
    marginMm: float = 15.0
    planMode: str = "isoVolume"


@dataclass
class PersonalizationJob:
    """A running personalization: the CLI process, its folder, and what is needed to load its outputs."""

    cli: object
    workDir: Path
    inputs: PersonalizationInputs
    settings: PersonalizationSettings
    method: object
    core: object                      # the T1Gd mask (Volume) on the T1 grid, shown as the core segment
    names: dict = field(default_factory=dict)   # temporary file -> how messages name the node
    notes: list = field(default_factory=list)
    ownsWorkDir: bool = True

    @property
    def outDir(self) -> Path:
        return self.workDir / "out"


#
# TumorPersonalizationWidget
#


class TumorPersonalizationWidget(ScriptedLoadableModuleWidget, slicer.util.VTKObservationMixin):
    """The panel: inputs, method, radiotherapy settings, Apply / progress / Cancel, results."""

    POLL_INTERVAL_MS = 200

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        slicer.util.VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None

    def setup(self):
        import qt  # only the Widget touches Qt: the Logic must run headless

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TumorPersonalization.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TumorPersonalizationLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setValue(0)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.onCancelButton()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtkCommandModified(), self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        self.onCancelButton()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.t1Volume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.t1Volume = firstVolume

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtkCommandModified(), self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtkCommandModified(), self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        # The parameter node, not the combo box's signal, drives the method widgets: connectGui updates the node
        # after the combo box has emitted, so a slot on the combo box would read the previous method.
        self._checkCanApply()
        self._updateMethodWidgets()

    def _checkCanApply(self, caller=None, event=None):
        node = self._parameterNode
        missing = [label for label, value in (("T1 volume", node.t1Volume), ("T1Gd lesion", node.t1gdLesion),
                                              ("FLAIR lesion", node.flairLesion)) if value is None]
        busy = self._job is not None
        self.ui.applyButton.enabled = not missing and not busy
        self.ui.applyButton.toolTip = (f"Select: {', '.join(missing)}" if missing else
                                       "Running..." if busy else "Personalize the growth model")

    def _updateMethodWidgets(self):
        if not self._parameterNode:
            return
        key = self._parameterNode.method.value
        reason = self.logic.methodUnavailableReason(key)
        self.ui.methodStatusLabel.text = reason or ""
        self.ui.methodStatusLabel.visible = bool(reason)
        self.ui.tmcmcSettingsGroupBox.visible = key == "tmcmc"

    def onApplyButton(self):
        """Start the run in a subprocess; the timer follows it."""
        with slicer.util.tryWithErrorDisplay("Cannot start the personalization.", waitCursor=True):
            self.logic.ensureDependencies(self._parameterNode.method.value)
            self._job = self.logic.start(self.logic.inputsFromParameterNode(self._parameterNode),
                                         self.logic.settingsFromParameterNode(self._parameterNode))
            self.ui.progressBar.setValue(0)
            self.ui.statusLabel.text = "Starting..."
            self.ui.cancelButton.enabled = True
            self._checkCanApply()
            self._timer.start()

    def onPoll(self):
        job = self._job
        if job is None:
            self._timer.stop()
            return
        finished = job.cli.poll()
        self.ui.progressBar.setValue(int(round(100 * job.cli.progress)))
        self.ui.statusLabel.text = f"{job.cli.message} ({job.cli.elapsedS:.0f} s)"
        if not finished:
            return
        self._timer.stop()
        self._job = None
        self.ui.cancelButton.enabled = False
        self._checkCanApply()
        with slicer.util.tryWithErrorDisplay("The personalization failed.", waitCursor=True):
            result = self.logic.finish(job)
            self._parameterNode.densityVolume = result.density
            self._parameterNode.ctvSegmentation = result.ctv
            self._parameterNode.parameterTable = result.table
            self.logic.showResults(result, self._parameterNode.t1Volume)
            self.ui.parameterTableView.setMRMLTableNode(result.table)
            volumes = ", ".join(f"{name}: {ml:.1f} mL" for name, ml in result.volumesMl.items())
            self.ui.statusLabel.text = f"Done in {job.cli.elapsedS:.0f} s. {volumes}" + "".join(
                f"\nNote: {note}" for note in result.notes)

    def onCancelButton(self):
        if self._job is None:
            return
        self._timer.stop()
        self.logic.cancel(self._job)
        self._job = None
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.text = "Cancelled: nothing was added to the scene."
        self._checkCanApply()


def vtkCommandModified():
    import vtk

    return vtk.vtkCommand.ModifiedEvent


#
# TumorPersonalizationLogic
#


class TumorPersonalizationLogic(ScriptedLoadableModuleLogic):
    """MRML nodes in, MRML nodes out; the computing is done by the Lib's CLI in a subprocess.

    Imports no qt/ctk, so it runs in ``Slicer --no-main-window`` batch mode, in tests with slicer-core, and from the
    Python console. Input nodes are only read; output nodes are created only after the run succeeded.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return TumorPersonalizationParameterNode(super().getParameterNode())

    # -- methods --------------------------------------------------------------------------------------------

    def methodUnavailableReason(self, methodKey: str):
        """None when ``methodKey`` is one of the registry's methods; else the sentence to show the user."""
        if methodKey not in _runner.METHODS:
            return f"unknown method {methodKey!r}; choose one of {', '.join(_runner.METHODS)}"
        return None

    def ensureDependencies(self, methodKey: str) -> None:
        """Install missing pinned packages (and torch for Learn-Morph-Infer) at first use, inside Slicer."""
        from TumorPersonalizationModuleLib import dependencies

        dependencies.ensureRequirements()
        if methodKey.startswith("lmi"):
            dependencies.ensureTorch()

    # -- parameter node -------------------------------------------------------------------------------------

    @staticmethod
    def inputsFromParameterNode(parameterNode) -> PersonalizationInputs:
        return PersonalizationInputs(parameterNode.t1Volume, parameterNode.t1gdLesion, parameterNode.flairLesion,
                                     parameterNode.petVolume, parameterNode.wmMap, parameterNode.gmMap,
                                     parameterNode.csfMap)

    @staticmethod
    def settingsFromParameterNode(parameterNode) -> PersonalizationSettings:
        return PersonalizationSettings(
            method=parameterNode.method.value, tmcmcSamples=parameterNode.tmcmcSamples,
            tmcmcFast=parameterNode.tmcmcFast, workers=parameterNode.workers, randomSeed=parameterNode.randomSeed,
            marginMm=parameterNode.marginMm, planMode=parameterNode.planMode.value)

    # -- running --------------------------------------------------------------------------------------------

    def start(self, inputs: PersonalizationInputs, settings: PersonalizationSettings,
              workDir=None) -> PersonalizationJob:
        """Check the inputs, write them to NIfTI files and start the CLI; returns at once.

        Raises InputError (a message naming the node) before anything starts. ``workDir``: keep the files there
        (default: a temporary folder removed by :meth:`finish` / :meth:`cancel`).
        """
        reason = self.methodUnavailableReason(settings.method)
        if reason:
            raise InputError(reason)
        method = _runner.METHODS[settings.method]
        if settings.planMode not in _outputs.PLAN_FILES:
            raise InputError(f"unknown plan mode {settings.planMode!r}; choose one of {', '.join(_outputs.PLAN_FILES)}")
        ownsWorkDir = workDir is None
        workDir = Path(tempfile.mkdtemp(prefix="TumorPersonalization-")) if ownsWorkDir else Path(workDir)
        try:
            files, names, notes, core = self._exportInputs(inputs, method, workDir / "inputs")
            command = _runner.buildCommand(
                method, files, workDir / "out", marginMm=settings.marginMm,
                samples=settings.tmcmcSamples, fast=settings.tmcmcFast, workers=settings.workers,
                randomSeed=settings.randomSeed)
            logging.info("TumorPersonalization: " + " ".join(command))
            cli = _runner.CliJob(command, env=_runner.childEnvironment())
        except BaseException:
            if ownsWorkDir:
                shutil.rmtree(workDir, ignore_errors=True)
            raise
        return PersonalizationJob(cli, workDir, inputs, settings, method, core, names, notes, ownsWorkDir)

    def _exportInputs(self, inputs: PersonalizationInputs, method, folder: Path):
        """Every input on the T1 grid as a NIfTI file; returns (files by CLI flag, names, notes, core mask)."""
        from TumorPersonalizationLib.imaging.io import write_volume
        from TumorPersonalizationModuleLib import nodes

        if inputs.t1Volume is None:
            raise InputError("T1 volume: no node selected (the patient's T1 defines the grid of every input)")
        t1 = nodes.volumeFromNode(inputs.t1Volume)
        reference = t1.geometry
        notes = []
        t1gd = nodes.maskFromNode(inputs.t1gdLesion, reference, "T1Gd lesion", notes)
        flair = nodes.maskFromNode(inputs.flairLesion, reference, "FLAIR lesion", notes)
        volumes = {"--t1": (t1, inputs.t1Volume, "T1 volume"), "--t1gd": (t1gd, inputs.t1gdLesion, "T1Gd lesion"),
                   "--flair": (flair, inputs.flairLesion, "FLAIR lesion")}
        optional = {"--pet": (inputs.petVolume, "FET-PET volume"), "--wm": (inputs.wmMap, "WM map"),
                    "--gm": (inputs.gmMap, "GM map"), "--csf": (inputs.csfMap, "CSF map")}
        for flag, (node, label) in optional.items():
            if node is None:
                continue
            if flag not in method.inputFlags:
                notes.append(f"{label} {nodes.nodeLabel(node)} is not used by {method.label}")
                continue
            volume = nodes.onGrid(nodes.volumeFromNode(node), reference, "linear",
                                  f"{label} {nodes.nodeLabel(node)}", notes)
            volumes[flag] = (volume, node, label)
        self._checkTissueInputs(inputs, method, reference)
        folder.mkdir(parents=True, exist_ok=True)
        files, names = {}, {}
        for flag, (volume, node, label) in volumes.items():
            path = write_volume(volume, folder / f"{flag.lstrip('-')}.nii.gz")
            files[flag] = path
            names[str(path)] = f"{label} {nodes.nodeLabel(node)}"
        return files, names, notes, t1gd

    @staticmethod
    def _checkTissueInputs(inputs, method, reference) -> None:
        if "--wm" not in method.inputFlags:
            return  # the method registers the bundled atlas itself
        given = {name: node for name, node in (("WM", inputs.wmMap), ("GM", inputs.gmMap), ("CSF", inputs.csfMap))
                 if node is not None}
        if given and not ("WM" in given and "GM" in given):
            raise InputError("tissue maps: select both a WM and a GM probability map (CSF optional), or none to "
                             "use the bundled atlas")
        if not given and not method.registersAtlas and "--t1" not in method.inputFlags:
            from TumorPersonalizationLib.imaging.atlas import ATLAS_DIR, ATLAS_FILES
            from TumorPersonalizationLib.imaging.io import read_volume

            atlas = read_volume(ATLAS_DIR / ATLAS_FILES["wm"], "bundled atlas").geometry
            if not atlas.is_close(reference):
                raise InputError(
                    f"{method.label} runs on the tissue maps' grid: select WM and GM probability maps on the T1 "
                    f"grid, or give inputs already in the bundled atlas's space ({atlas.describe()}); the T1 has "
                    f"{reference.describe()}. Learn-Morph-Infer registers the atlas to the patient itself.")

    def finish(self, job: PersonalizationJob):
        """Load a finished run's outputs into new nodes (all or none) and remove its temporary files.

        Raises RuntimeError with the CLI's message (input files named by their nodes) when the run failed.
        """
        try:
            job.cli.poll()
            if not job.cli.finished:
                raise RuntimeError("the personalization is still running")
            if not job.cli.succeeded:
                raise RuntimeError(self.describeFailure(job))
            return self._loadResults(job)
        finally:
            if job.ownsWorkDir:
                shutil.rmtree(job.workDir, ignore_errors=True)

    def _loadResults(self, job: PersonalizationJob):
        base = f"{job.inputs.t1Volume.GetName()} {job.method.label}"
        result = _outputs.ResultNodes(notes=list(job.notes) + [f"Warning: {w}" for w in job.cli.warnings])
        try:
            result.report = _outputs.readReport(job.outDir)
            _outputs.loadDensity(job.outDir, f"{base} density", result)
            _outputs.loadTissueMaps(job.outDir, f"{base} tissue", result)
            _outputs.loadMassEffect(job.outDir, base, result)
            _outputs.loadPlans(job.outDir, f"{base} CTVs", job.settings.planMode, job.settings.marginMm, job.core,
                               result)
            _outputs.addParameterTable(result.report, f"{base} parameters", result)
            if job.method.samplesPosterior:
                _outputs.addMarginalPlots(result.report, f"{base} posterior", result)
            _outputs.groupInFolder(result, base)
        except BaseException:
            result.remove()
            raise
        for note in result.notes:
            logging.warning(f"TumorPersonalization: {note}")
        return result

    @staticmethod
    def describeFailure(job: PersonalizationJob) -> str:
        """The CLI's error with temporary file names replaced by the nodes they came from."""
        message = job.cli.errorMessage()
        for path, name in sorted(job.names.items(), key=lambda item: -len(item[0])):
            for flag in ("--t1gd", "--flair", "--pet", "--wm", "--gm", "--csf", "--t1"):
                message = message.replace(f"{flag} {path}", name)
            message = message.replace(path, name)
        return message

    def cancel(self, job: PersonalizationJob) -> None:
        """Stop the run (and its worker processes); nothing is added to the scene, temporary files go."""
        try:
            job.cli.cancel()
        finally:
            if job.ownsWorkDir:
                shutil.rmtree(job.workDir, ignore_errors=True)

    def run(self, inputs: PersonalizationInputs, settings: PersonalizationSettings, progress=None,
            shouldCancel=None, timeoutS=None, workDir=None):
        """Blocking run (batch mode, console, tests): start, wait, load. Returns the ResultNodes.

        progress(fraction, message) is called while it runs; shouldCancel() returning True cancels it
        (then RuntimeError("cancelled") is raised and the scene is unchanged).
        """
        job = self.start(inputs, settings, workDir=workDir)

        def follow(cli):
            if progress is not None:
                progress(cli.progress, cli.message)
            if shouldCancel is not None and not cli.finished and shouldCancel():
                raise _CancelRequested()

        try:
            if not job.cli.wait(timeoutS=timeoutS, callback=follow):
                raise TimeoutError(f"the personalization took longer than {timeoutS} s")
        except (_CancelRequested, TimeoutError, KeyboardInterrupt) as exc:
            self.cancel(job)
            raise RuntimeError("cancelled" if isinstance(exc, _CancelRequested) else str(exc) or "interrupted")
        return self.finish(job)

    def runFromParameterNode(self, parameterNode, **kwargs):
        """:meth:`run` with the parameter node's inputs and settings; stores the outputs in it."""
        result = self.run(self.inputsFromParameterNode(parameterNode), self.settingsFromParameterNode(parameterNode),
                          **kwargs)
        parameterNode.densityVolume = result.density
        parameterNode.ctvSegmentation = result.ctv
        parameterNode.parameterTable = result.table
        return result

    @staticmethod
    def showResults(result, backgroundVolume=None) -> None:
        """Density as the foreground of the slice views over the T1; CTV outlines on top."""
        slicer.util.setSliceViewerLayers(background=backgroundVolume, foreground=result.density,
                                         foregroundOpacity=0.6, fit=True)

    # -- files ----------------------------------------------------------------------------------------------

    @staticmethod
    def loadVolumeFile(path, labelmap: bool = False, name: str = None):
        """Read a NIfTI/NRRD file into a new volume node through an MRML storage node (works headless)."""
        className = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = slicer.mrmlScene.AddNewNodeByClass(className, name or Path(path).name.split(".")[0])
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        storage.SetSingleFile(True)
        if labelmap:
            storage.SetCenterImage(False)
        if not storage.ReadData(node):
            slicer.mrmlScene.RemoveNode(node)
            raise InputError(f"cannot read {path} as a volume")
        node.CreateDefaultDisplayNodes()
        return node

    @staticmethod
    def saveResults(result, outDir) -> dict:
        """Write the result nodes to files (batch mode): density .nii.gz, CTVs .seg.nrrd, table .tsv."""
        outDir = Path(outDir)
        outDir.mkdir(parents=True, exist_ok=True)
        written = {}
        for key, node, suffix in (("density", result.density, ".nii.gz"), ("ctv", result.ctv, ".seg.nrrd"),
                                  ("parameters", result.table, ".tsv")):
            if node is None:
                continue
            path = outDir / f"{key}{suffix}"
            # A storage node that is not added to the scene writes the file without changing the scene.
            storage = node.CreateDefaultStorageNode()
            storage.SetFileName(str(path))
            if not storage.WriteData(node):
                raise RuntimeError(f"could not write {path}")
            written[key] = path
        return written


class _CancelRequested(Exception):
    pass


#
# TumorPersonalizationTest
#


class TumorPersonalizationTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload & Test, ctest) and, through a small stand-in for the application, in pytest."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_methods_listed()
        self.setUp()
        self.test_personalize_small_phantom()
        self.setUp()
        self.test_cancel_leaves_scene()

    def _phantom(self):
        """A 20 x 22 x 16 head at 3 mm (WM ellipsoid in a GM shell) with a synthetic tumor: nodes + truth."""
        import numpy as np

        from TumorPersonalizationLib.imaging.tissue import TissueMaps
        from TumorPersonalizationLib.imaging.volume import Geometry, Volume
        from TumorPersonalizationLib.synthetic import synthetic_case

        shape = (20, 22, 16)
        geometry = Geometry(shape, (3.0, 3.0, 3.0), (-30.0, -33.0, -24.0))
        idx = np.indices(shape, dtype=np.float64)
        centre = (np.asarray(shape) - 1) / 2.0
        r = np.sqrt(sum(((idx[a] - centre[a]) / (0.45 * shape[a])) ** 2 for a in range(3)))
        wm = np.clip((0.8 - r) / 0.1, 0, 1).astype(np.float32)
        gm = (np.clip((1.0 - r) / 0.1, 0, 1) - wm).astype(np.float32)
        tissue = TissueMaps(Volume(wm, geometry), Volume(gm, geometry))
        case = synthetic_case(tissue, 0.3, 0.05, 150.0, tuple(geometry.index_to_ras([7, 11, 8])))

        def add(volume, name, className="vtkMRMLScalarVolumeNode"):
            return slicer.util.addVolumeFromArray(np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0))),
                                                  geometry.affine, name, className)

        t1 = add(Volume(100 * wm + 60 * gm, geometry), "T1")
        t1gd = add(case.t1gd, "T1Gd", "vtkMRMLLabelMapVolumeNode")
        flair = add(case.flair, "FLAIR", "vtkMRMLLabelMapVolumeNode")
        inputs = PersonalizationInputs(t1, t1gd, flair, wmMap=add(tissue.wm, "WM"), gmMap=add(tissue.gm, "GM"))
        return inputs, case

    def test_methods_listed(self):
        labels = [PersonalizationMethod.label(m) for m in PersonalizationMethod]
        self.assertEqual(labels, ["Learn-Morph-Infer (about half a minute)",
                                  "Learn-Morph-Infer + full refinement (minutes)",
                                  "Learn-Morph-Infer in the atlas, unfitted (fastest, least accurate)",
                                  "Learn-Morph-Infer, mass-effect model (the tumor pushes the brain; about a minute)",
                                  "TMCMC (Bayesian)", "NPE (neural posterior)"])
        logic = TumorPersonalizationLogic()
        self.assertIsNone(logic.methodUnavailableReason("tmcmc"))
        self.assertIsNone(logic.methodUnavailableReason("npe"))
        for key in ("lmi", "lmiRefine", "lmiAtlas", "lmiMassEffect"):
            self.assertIsNone(logic.methodUnavailableReason(key))
        self.delayDisplay("methods listed")

    def test_personalize_small_phantom(self):
        inputs, case = self._phantom()
        before = slicer.util.arrayFromVolume(inputs.t1gdLesion).copy()
        settings = PersonalizationSettings(method="tmcmc", tmcmcSamples=32, workers=1)
        fractions = []
        result = TumorPersonalizationLogic().run(inputs, settings, progress=lambda f, m: fractions.append(f),
                                                 timeoutS=300)
        density = slicer.util.arrayFromVolume(result.density)
        self.assertGreater(float(density.max()), 0.5)
        self.assertEqual(result.ctv.GetSegmentation().GetNumberOfSegments(), 3)
        self.assertGreater(result.table.GetNumberOfRows(), 10)
        self.assertEqual(len(result.charts), len(result.report["marginals"]))
        self.assertEqual(fractions[-1], 1.0)
        self.assertTrue((slicer.util.arrayFromVolume(inputs.t1gdLesion) == before).all(), "input modified")
        # The density is highest where the T1Gd lesion is.
        core = slicer.util.arrayFromVolume(inputs.t1gdLesion) > 0
        self.assertGreater(float(density[core].mean()), 2 * float(density[~core].mean()))
        self.delayDisplay("personalization on a small phantom passed")

    def test_cancel_leaves_scene(self):
        inputs, _ = self._phantom()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        logic = TumorPersonalizationLogic()
        job = logic.start(inputs, PersonalizationSettings(method="tmcmc", tmcmcSamples=2048, workers=1))
        logic.cancel(job)
        self.assertTrue(job.cli.cancelled and job.cli.finished)
        self.assertFalse(job.workDir.exists())
        with self.assertRaises(RuntimeError):
            logic.finish(job)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("cancel passed")
