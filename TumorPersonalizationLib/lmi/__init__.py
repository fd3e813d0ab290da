"""Learn-Morph-Infer: register to the atlas, a network predicts the growth parameters, simulate, warp back."""
