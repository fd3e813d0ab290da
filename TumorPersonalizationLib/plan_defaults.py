"""The radiotherapy plans' defaults, in a module with no imports: the method registry (and through it the Slicer
module and ``methods --json``) reads them without loading numpy or scipy. :mod:`.radiotherapy` uses them."""

DEFAULT_MARGIN_MM = 15.0
"""Standard CTV: the T1Gd core grown by this Euclidean margin (mm)."""
DEFAULT_CORE_LABELS = (1, 3, 4)
"""BraTS necrosis (1) and enhancing tumor (4 up to BraTS 2021, 3 from 2023): the T1Gd-visible core."""
DEFAULT_THRESHOLD = 0.01
"""Density threshold of the threshold plan: well below the FLAIR-visible border (thesis range 0.05-0.5 for
c_FLAIR), so the plan reaches cells MRI cannot show; it is also the lowest level Learn-Morph-Infer is scored at."""
DEFAULT_MIN_PROBABILITY = 0.5
"""Probabilistic plan: voxels where P(c >= threshold) reaches this over the posterior draws."""
CSF_THRESHOLD = 0.5
"""A voxel counts as CSF when its CSF probability is at least this."""
