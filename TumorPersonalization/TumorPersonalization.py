"""TumorPersonalization: a 3D Slicer scripted module (minimal for now).

Everything that computes lives in ``TumorPersonalizationLib`` (pure Python, no Slicer, no Qt); this module only
converts MRML nodes to and from the Lib's arrays. The full panel (inputs, methods, Apply/Cancel, outputs) is built
in its own issue; today the module registers itself and offers the Lib's forward simulation to Python scripts.
"""
import numpy as np
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class TumorPersonalization(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Tumor Personalization"
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["TumorPersonalization developers"]
        self.parent.helpText = (
            "Personalizes glioma growth models (Fisher-Kolmogorov reaction-diffusion in WM/GM tissue maps) to a "
            "patient's scans and turns the inferred tumor cell density into radiotherapy target volumes. "
            "Methods follow I. Ezhov, <i>Learnable methods for brain tumor model personalization</i>, "
            "PhD dissertation, Technical University of Munich.")
        self.parent.acknowledgementText = (
            "Atlas: ICBM 2009a nonlinear symmetric, Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging "
            "Centre, Montreal Neurological Institute, McGill University (see Resources/Atlas/NOTICE.txt).")


class TumorPersonalizationWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addStretch(1)


class TumorPersonalizationLogic(ScriptedLoadableModuleLogic):
    """Scriptable from the Python console; imports no qt/ctk."""

    def simulateInAtlas(self, dwMm2PerDay, rhoPerDay, days, seedRas, ratio=10.0):
        """Simulate in the bundled atlas; returns a new scalar volume node with the density (RAS geometry kept)."""
        from TumorPersonalizationLib.forward import Seed, simulate
        from TumorPersonalizationLib.imaging.tissue import load_tissue_maps

        tissue = load_tissue_maps()
        density = simulate(tissue, dwMm2PerDay, rhoPerDay, days, Seed(ras_mm=tuple(seedRas)), ratio=ratio)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "TumorDensity")
        # Slicer arrays are indexed [k, j, i]; the Lib's [i, j, k].
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.transpose(density.array, (2, 1, 0))))
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(density.geometry.affine))
        return node


class TumorPersonalizationTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_simulateInAtlas()

    def test_simulateInAtlas(self):
        node = TumorPersonalizationLogic().simulateInAtlas(0.2, 0.05, 60.0, (-25.0, -10.0, 20.0))
        array = slicer.util.arrayFromVolume(node)
        self.assertGreater(float(array.max()), 0.5)
        self.delayDisplay("simulateInAtlas passed")
