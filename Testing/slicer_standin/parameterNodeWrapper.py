"""Stand-in for ``slicer.parameterNodeWrapper`` (the real package imports Qt for its GUI connectors).

It reads the wrapped class's annotations like the real one: ``int``, ``float``, ``str``, ``bool``, ``enum.Enum``,
MRML node classes and ``Union`` of node classes (with None), ``Annotated[..., WithinRange(lo, hi)]``, and class
attributes as defaults. Values live in the vtkMRMLScriptedModuleNode (parameters as text, nodes as references),
so they are saved with the scene. ``connectGui`` is not available here.
"""
from __future__ import annotations

import enum
import typing

import slicer

__all__ = ["parameterNodeWrapper", "WithinRange", "Choice"]


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"value {value} is not within [{self.minimum}, {self.maximum}]")


class Choice:
    def __init__(self, choices):
        self.choices = tuple(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"value {value!r} is not one of {self.choices}")


def _nodeClasses(datatype):
    """The MRML classes a node field accepts (None if the field is not a node field)."""
    if isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode):
        return (datatype,)
    if typing.get_origin(datatype) is typing.Union:
        args = [a for a in typing.get_args(datatype) if a is not type(None)]
        if args and all(isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode) for a in args):
            return tuple(args)
    return None


class _Field:
    def __init__(self, name, datatype, validators, default):
        self.name, self.datatype, self.validators, self.default = name, datatype, validators, default
        self.nodeClasses = _nodeClasses(datatype)
        if self.nodeClasses is None and not (datatype in (int, float, str, bool) or
                                             (isinstance(datatype, type) and issubclass(datatype, enum.Enum))):
            raise TypeError(f"parameter {name}: unsupported type {datatype}")

    def isIn(self, node):
        return node.HasParameter(self.name)

    def write(self, node, value):
        if self.nodeClasses is not None:
            if value is not None and not isinstance(value, self.nodeClasses):
                raise TypeError(f"{self.name}: expected one of {[c.__name__ for c in self.nodeClasses]}, got "
                                f"{type(value).__name__}")
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        if self.datatype is bool:
            if not isinstance(value, bool):
                raise TypeError(f"{self.name}: expected bool, got {value!r}")
            text = "True" if value else "False"
        elif isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            if not isinstance(value, self.datatype):
                raise TypeError(f"{self.name}: expected {self.datatype.__name__}, got {value!r}")
            text = value.name
        else:
            if self.datatype is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{self.name}: expected int, got {value!r}")
            if self.datatype is float and not isinstance(value, (int, float)):
                raise TypeError(f"{self.name}: expected float, got {value!r}")
            text = str(value)
        for validator in self.validators:
            validator.validate(value)
        node.SetParameter(self.name, text)

    def read(self, node):
        if self.nodeClasses is not None:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.datatype is bool:
            return text == "True"
        if isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            return self.datatype[text]
        return self.datatype(text)


def _defaultFor(datatype):
    if datatype is bool:
        return False
    if datatype in (int, float):
        return datatype(0)
    if datatype is str:
        return ""
    if isinstance(datatype, type) and issubclass(datatype, enum.Enum):
        return next(iter(datatype))
    return None


def parameterNodeWrapper(cls):
    """Class decorator: a wrapper whose attributes read and write a vtkMRMLScriptedModuleNode."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        validators = []
        if typing.get_origin(hint) is typing.Annotated:
            args = typing.get_args(hint)
            hint, validators = args[0], [a for a in args[1:] if hasattr(a, "validate")]
        fields[name] = _Field(name, hint, validators, getattr(cls, name, _defaultFor(hint)))

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for field in fields.values():  # defaults for what the node does not hold yet, as Slicer does
            if not field.isIn(parameterNode):
                field.write(parameterNode, field.default)

    def connectGui(self, gui):
        raise NotImplementedError("connectGui needs the Slicer application (Qt)")

    namespace = {"__init__": __init__, "connectGui": connectGui, "allParameters": fields,
                 "__doc__": cls.__doc__, "__module__": cls.__module__}
    for name, field in fields.items():
        namespace[name] = property(lambda self, f=field: f.read(self.parameterNode),
                                   lambda self, value, f=field: f.write(self.parameterNode, value))
    return type(cls.__name__, (), namespace)
