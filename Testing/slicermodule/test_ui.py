"""UI tier: the panel's .ui loads with PySide6's QUiLoader, and it matches the code and the parameter node.

Slicer's custom widgets (qMRMLNodeComboBox, ctkSliderWidget, ...) are unknown to PySide6, which builds their
declared base class instead; their class and properties are checked from the XML.
"""
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slicer_fixtures import module, scene  # noqa: F401 (fixtures; also puts the module on sys.path)

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "TumorPersonalization"

UI_FILE = MODULE_DIR / "Resources" / "UI" / "TumorPersonalization.ui"
MODULE_FILE = MODULE_DIR / "TumorPersonalization.py"


def _widgets():
    """{name: (class, {property: value})} for every widget in the .ui (string, bool, number and list values)."""
    out = {}
    for widget in ET.parse(UI_FILE).getroot().iter("widget"):
        properties = {}
        for prop in widget.findall("property"):
            value = prop[0]
            if value.tag == "stringlist":
                properties[prop.get("name")] = [s.text for s in value]
            else:
                properties[prop.get("name")] = value.text
        out[widget.get("name")] = (widget.get("class"), properties)
    return out


def test_ui_loads_with_quiloader():
    pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QWidget

    _app = QApplication.instance() or QApplication([])  # noqa: F841 (QUiLoader needs one)
    file = QFile(str(UI_FILE))
    assert file.open(QFile.ReadOnly)
    loader = QUiLoader()
    root = loader.load(file)
    file.close()
    assert root is not None, loader.errorString()
    for name in _widgets():
        assert root.findChild(QWidget, name) is not None or name == root.objectName(), name
    assert root.findChild(QWidget, "t1Selector").property("SlicerParameterName") == "t1Volume"


def test_every_widget_the_code_names_exists():
    named = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert {"applyButton", "cancelButton", "progressBar", "tmcmcSettingsGroupBox", "methodStatusLabel"} <= named
    missing = named - set(_widgets())
    assert not missing, f"the Widget uses widgets the .ui lacks: {sorted(missing)}"


def _connector_classes(module, datatype):
    """The widget classes Slicer's parameterNodeWrapper can connect to a field of this type."""
    import enum
    import typing

    if typing.get_origin(datatype) is typing.Annotated:
        datatype = typing.get_args(datatype)[0]
    if isinstance(datatype, type) and issubclass(datatype, enum.Enum):
        return {"QComboBox"}
    return {bool: {"QCheckBox", "QPushButton"}, int: {"QSpinBox", "QSlider"},
            float: {"QDoubleSpinBox", "ctkSliderWidget"}, str: {"QLineEdit", "QComboBox"}}.get(
        datatype, {"qMRMLNodeComboBox"})


def test_slicer_parameter_names_match_the_parameter_node(module):
    """Every field has a widget whose SlicerParameterName is its name and whose class can represent its type."""
    import typing

    fields = {name: field.datatype for name, field in module.TumorPersonalizationParameterNode.allParameters.items()}
    widgets = _widgets()
    bound = {props["SlicerParameterName"]: (name, cls) for name, (cls, props) in widgets.items()
             if "SlicerParameterName" in props}
    assert set(bound) == set(fields), (f"fields without a widget {sorted(set(fields) - set(bound))}, names that "
                                       f"are no field {sorted(set(bound) - set(fields))}")
    for field, (widget, cls) in bound.items():
        assert cls in _connector_classes(module, fields[field]), (field, widget, cls)
        if cls == "qMRMLNodeComboBox":  # the selector offers exactly the node classes the field accepts
            datatype = fields[field]
            classes = [a for a in typing.get_args(datatype) if a is not type(None)] or [datatype]
            assert sorted(widgets[widget][1]["nodeTypes"]) == sorted(c().GetClassName() for c in classes), field
