"""Neural posterior estimation (thesis ch. 6) on ``sbi``: building blocks of the ``npe`` method.

- :mod:`.config`: the network / training / dataset config (``Resources/NPE/config.json``);
- :mod:`.parameters`: the parameter space (mu1, mu2, seed offset, visibility levels, PET scale and noise), scaled;
- :mod:`.observation`: the lesion-centred crop of the summed T1Gd + FLAIR label map with WM / GM / CSF channels;
- :mod:`.simulator`: prior or proposal draw -> solver on the lesion's region of interest -> observation, batched
  through :mod:`TumorPersonalizationLib.execution`;
- :mod:`.embedding`: the 3D CNN that embeds an observation for the mixture density network;
- :mod:`.estimator`: the MDN posterior estimator on sbi (build, train, save, load);
- :mod:`.rounds`: the sequential rounds per patient and their stopping rule.

Training of the amortised first round lives in :mod:`.training` and is never imported at run time. Every module
imports torch and sbi inside its functions or at its top only where it needs them, so the registry can list the
``npe`` method without loading them.
"""
