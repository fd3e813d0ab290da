"""Learn-Morph-Infer's training side: the simulated dataset (:mod:`.dataset`), the inverse network's training
(:mod:`.train_network`), the dataset regrown on the atlas grid (:mod:`.atlas_growth`), the shape and seed
regressors' training (:mod:`.train_regressors`) and random label warps for benchmarks (:mod:`.label_warp`).

Nothing that runs at inference imports this package; it imports the run-time modules of :mod:`..lmi` (labels,
inputs, network, grids) so that training and inference read the lesion alike.
"""
