"""The 3D CNN that embeds an observation (:mod:`.observation`) for the mixture density network.

sbi's own CNN embedding is 1D / 2D only. This one is a plain VGG-style encoder: per level two 3x3x3 convolutions
(ReLU) and a 2x max-pool, then the remaining grid is flattened (not averaged: where the lesion sits in the crop
is what locates the seed) and mapped to ``features`` numbers by two linear layers.
"""
from __future__ import annotations

import torch
from torch import nn


class LabelMapEmbedding(nn.Module):
    """Observation -> feature vector.

    Parameters
    ----------
    in_channels : int
        Channels of an observation (label map, optional PET, WM, GM, CSF).
    size : int
        Crop edge in voxels; divisible by 2^len(channels).
    channels : sequence of int
        Convolution width per level; each level halves the grid.
    features : int
        Length of the output vector.

    Forward
    -------
    x : (B, in_channels, size, size, size) or (B, in_channels * size^3) float tensor
        Flattened input is reshaped (sbi may hand observations over either way).
    returns : (B, features) float tensor
    """

    def __init__(self, in_channels: int, size: int, channels=(8, 16, 32), features: int = 32):
        super().__init__()
        self.in_channels, self.size = int(in_channels), int(size)
        layers, width = [], self.in_channels
        for out in channels:
            layers += [nn.Conv3d(width, out, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv3d(out, out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool3d(2)]
            width = out
        self.encoder = nn.Sequential(*layers)
        remaining = self.size // 2 ** len(channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * remaining ** 3, 4 * features),
                                  nn.ReLU(inplace=True), nn.Linear(4 * features, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_channels, self.size, self.size, self.size)
        return self.head(self.encoder(x))
