"""Patient <-> atlas registration (SimpleITK: affine + diffeomorphic demons) for Learn-Morph-Infer."""
from .atlas_registration import (
    SKULL_STRIPPED_MAX_FOREGROUND_ML,
    Registration,
    RegistrationSettings,
    looks_skull_stripped,
    register_to_atlas,
)

__all__ = [
    "SKULL_STRIPPED_MAX_FOREGROUND_ML",
    "Registration",
    "RegistrationSettings",
    "looks_skull_stripped",
    "register_to_atlas",
]
