"""Learn-Morph-Infer (thesis ch. 7): register to the atlas, estimators read the lesion and predict the growth
parameters, (refine,) simulate, warp back.

Run time (nothing here imports :mod:`.training`):

- :mod:`.stages`: the stages, one function and one typed result each; :mod:`.report` assembles the report;
  ``methods/lmi.py`` composes them;
- :mod:`.models`: the trained network and regressors, loaded together;
- :mod:`.estimators`: mu1, mu2 and the seed from the network and the regressors;
- :mod:`.refinement`: the mask fit and the Nelder-Mead search on two grids;
- :mod:`.grids`: the network, atlas and patient grids, masks onto them, seeds between them;
- :mod:`.network`, :mod:`.inputs`, :mod:`.labels`: the inverse network, its input, the label encoding;
- :mod:`.shape_regressor`, :mod:`.shape_features`, :mod:`.seed_features`, :mod:`.lesion_descriptors`: the shape
  and seed regressors and what they read;
- :mod:`.config`, :mod:`.parameters`, :mod:`.weights`: the config and network grid, mu1 / mu2 <-> Dw, rho, T,
  reading weights files.

Training (dataset, network and regressor training, regrowth on the atlas grid): :mod:`.training`.
"""
