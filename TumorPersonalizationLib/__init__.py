"""TumorPersonalization: personalized glioma growth models and radiotherapy targets (pure Python, no Slicer).

The public entry::

    from TumorPersonalizationLib import Case, personalize
    result = personalize(Case.from_files(t1=..., t1gd=..., flair=...), method="lmi")

``Case``, ``Personalization`` and ``personalize`` are imported on first use, so that ``import
TumorPersonalizationLib`` (and the command line's start) stays light.
"""
__version__ = "0.1.0"

__all__ = ["Case", "Personalization", "personalize"]


def __getattr__(name):
    if name in ("Case", "Personalization"):
        from . import personalization

        return getattr(personalization, name)
    if name == "personalize":
        from .methods import personalize

        return personalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
