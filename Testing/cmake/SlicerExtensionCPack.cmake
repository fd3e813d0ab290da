# Stub: packaging is Slicer's business.
