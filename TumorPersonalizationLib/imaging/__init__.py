"""Images with geometry: the Volume type, file I/O, resampling and the bundled atlas."""
from .volume import Geometry, Volume
from .io import read_volume, write_volume, resample

__all__ = ["Geometry", "Volume", "read_volume", "write_volume", "resample"]
