"""Stand-in for ``slicer.ScriptedLoadableModule`` (the real one imports qt and ctk)."""
from __future__ import annotations

import logging
import os
import unittest

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]


class _Parent:
    """What the application hands a module: attributes it fills in, and the file it came from."""

    def __init__(self, path=""):
        self.path = path
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)


class ScriptedLoadableModuleWidget:
    """Only for import: the Widget needs Qt, which this stand-in does not provide."""

    def __init__(self, parent=None):
        raise RuntimeError("the module's Widget needs the Slicer application (Qt)")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        """The module's singleton vtkMRMLScriptedModuleNode, created on first use (as in Slicer)."""
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.AddNode(self.createParameterNode())
        return node

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        node.SetAttribute("ModuleName", self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.messageDelay = 0

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        logging.info(message)

    def runTest(self):  # overridden by modules
        pass


def makeParent(path):
    return _Parent(path)
