import numpy as np
import pytest


def phantom_tissue(shape=(40, 44, 36), spacing_mm=(2.0, 2.0, 2.0)):
    """A small synthetic head: WM ellipsoid, GM shell, a CSF 'ventricle' in the middle, background outside.

    Returns (wm, gm, csf) float32 arrays that sum to at most 1.
    """
    idx = np.indices(shape, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2.0
    r = np.sqrt(sum(((idx[a] - centre[a]) / (0.45 * shape[a])) ** 2 for a in range(3)))
    wm = np.clip((0.8 - r) / 0.1, 0, 1)
    brain = np.clip((1.0 - r) / 0.1, 0, 1)
    gm = brain - wm
    ventricle = np.sqrt(sum(((idx[a] - centre[a]) / (0.08 * shape[a])) ** 2 for a in range(3))) < 1.0
    csf = np.where(ventricle, 1.0, np.clip(1.0 - brain, 0, 1) * (r < 1.1))
    wm = np.where(ventricle, 0.0, wm)
    gm = np.where(ventricle, 0.0, gm)
    return wm.astype(np.float32), gm.astype(np.float32), csf.astype(np.float32)


@pytest.fixture
def phantom():
    return phantom_tissue()
