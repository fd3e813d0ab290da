"""Helpers of the TumorPersonalization Slicer module (no Qt anywhere in this package).

runner        the CLI subprocess: methods, command line, progress, cancel (no Slicer import)
nodes         MRML nodes <-> the Lib's Volume (array [i, j, k] + RAS geometry)
outputs       the CLI's output folder -> density overlay, CTV segmentation, table, plots
dependencies  pip requirements at first use, torch through the PyTorch extension
"""
