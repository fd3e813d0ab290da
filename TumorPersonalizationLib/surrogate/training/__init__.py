"""The surrogate's training side: anatomies to grow tumors in (:mod:`.anatomies`), the simulated dataset
(:mod:`.dataset`) and the training loop (:mod:`.train`).

Nothing that runs at inference imports this package; it imports the run-time modules of :mod:`..surrogate` (crop,
network, config, scores) so that training and prediction crop and normalise alike.
"""
