"""Images with geometry: the Volume type, file I/O, resampling and the bundled atlas."""
from .io import read_volume, resample, write_volume
from .volume import Geometry, Volume

__all__ = ["Geometry", "Volume", "read_volume", "write_volume", "resample"]
