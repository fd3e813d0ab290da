"""The geometry-aware neural surrogate of the forward solver (thesis ch. 5): anatomy crop + (Dw, rho, T) -> density.

Run time (nothing here imports :mod:`.training`):

- :mod:`.model`: load the trained weights; :func:`.model.simulate` (the call of ``forward.simulate``) and
  :class:`.model.SurrogateDomain` (the interface of the solver's ``Domain``, for calibration);
- :mod:`.network`: the encoder-decoder; :mod:`.crop`: the seed-centred crop and pasting back;
- :mod:`.config`: the config, the trained parameter ranges and their normalisation; :mod:`.scores`: Dice and MAE
  as the thesis measures them.

Training (anatomies, dataset, training loop): :mod:`.training`. Method, sizes and measurements:
docs/methods/surrogate.md.
"""
