"""Personalize a whole cohort on Dask: one task per patient, resumable, with a summary table and figure.

- :mod:`.layouts`: find the patients under a folder (our file names, BraTS names, the PREDICT-GBM container layout)
  or in a CSV manifest, and read one patient's inputs into a :class:`~..personalization.Case`.
- :mod:`.record`: what a finished patient's folder records (method, settings, input fingerprints) and the atomic
  publication of that folder, which makes a rerun skip it and an interruption leave no half-written one.
- :mod:`.task`: the function a Dask worker runs for one patient.
- :mod:`.run`: the client side: a LocalCluster or a running scheduler, the patients in flight, progress, Ctrl-C.
- :mod:`.summary`: ``summary.csv`` (one row per patient) and ``summary.png``.
- :mod:`.predict_gbm`: the PREDICT-GBM benchmark's container entry point (``/mlcube_io0`` in, ``/mlcube_io1`` out).

The command line is ``python -m TumorPersonalizationLib cohort``; details in ``docs/cohort.md``.
"""
