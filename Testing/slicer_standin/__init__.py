"""A small stand-in for the parts of 3D Slicer that only the application has, on top of slicer-core.

slicer-core (from ``trame-slicer[standalone]``) brings the MRML scene, the node classes, module logics and
``slicer.util``; it has no application object, no ``slicer.modules``, no ``ScriptedLoadableModule`` and no
``parameterNodeWrapper`` (pure Python in Slicer, but it imports Qt). :func:`install` builds a scene with the
application logic and the module logics the TumorPersonalization Logic uses, and registers stand-ins for the
rest, so the module file imports unchanged and its Logic and Test class run headless.

What this cannot check (only real Slicer can): the Widget (Qt), the parameter node's GUI connections
(``connectGui``; the UI tier checks the names instead), the real ``parameterNodeWrapper``'s serialisation, and
``slicer.util`` functions that need the application's IO manager.
"""
from __future__ import annotations

import sys
import types

import slicer


class _Modules(types.SimpleNamespace):
    """``slicer.modules``: each entry has ``logic()``, as in the application."""


class _Module:
    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


class _Application:
    """The few ``slicer.app`` members headless code touches."""

    def __init__(self, applicationLogic):
        self._applicationLogic = applicationLogic
        self.commandOptions = types.SimpleNamespace(noMainWindow=True)

    def applicationLogic(self):
        return self._applicationLogic

    def processEvents(self):
        pass

    @property
    def testingEnabled(self):
        return True


def install():
    """Create a fresh scene and install ``slicer.mrmlScene``, ``slicer.app``, ``slicer.modules`` and stand-ins.

    Returns the scene. Calling it again replaces the scene (a clean application).
    """
    from . import parameterNodeWrapper, ScriptedLoadableModule

    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    appLogic.GetColorLogic().SetMRMLScene(scene)
    appLogic.GetColorLogic().AddDefaultColorNodes()
    logics = {}
    # The application's Colors module registers the colour legend node (its logic would also want colour files).
    scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    for name, cls in (("plots", slicer.vtkSlicerPlotsLogic),
                      ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("subjecthierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
                      ("volumes", slicer.vtkSlicerVolumesLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        appLogic.SetModuleLogic(name, logic)
        logics[name] = _Module(logic)
    # The application's data IO manager and cache (reading a .mrb needs a cache directory to unpack into).
    import tempfile

    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(tempfile.mkdtemp(prefix="slicer-standin-cache-"))
    ioManager = slicer.vtkDataIOManager()
    ioManager.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(ioManager)
    slicer.mrmlScene = scene
    slicer.app = _Application(appLogic)
    slicer.modules = _Modules(**logics)
    slicer._standinKeepAlive = (appLogic, logics, cache, ioManager)  # VTK objects must outlive the scene's use of them
    for name, module in (("ScriptedLoadableModule", ScriptedLoadableModule),
                         ("parameterNodeWrapper", parameterNodeWrapper)):
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    return scene
