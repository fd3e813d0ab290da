"""TumorPersonalization: personalized glioma growth models and radiotherapy targets (pure Python, no Slicer)."""
__version__ = "0.1.0"
