"""The inverse network of Learn-Morph-Infer: tumor masks in atlas space -> (mu1, mu2, seed i, j, k) in [-1, 1].

ResNet-style as in the thesis (chapter 7, Fig. 2), without BatchNorm: a stride-2 convolution (kernel
``stem_kernel``) to ``width`` channels, ``blocks`` residual blocks of ``convs_per_block`` 3x3x3 convolutions each
(ReLU after every convolution, the block input added to its output), a 2x max-pool after every block but the last,
global average pooling and one linear layer. The thesis' size is width 64 on 128^3 with one input channel; the CPU
config uses width 16 on a 40^3 lesion-centred crop with six channels (``lmi/inputs.py``, ``Resources/LMI/config.json``).

Initialisation: He (Kaiming) normal for every convolution as in the thesis, except the last convolution of each
residual block, which starts at zero so every block starts as the identity; without BatchNorm this keeps the
activations' scale from growing with depth at the start of training.
"""
from __future__ import annotations

import torch
from torch import nn

N_OUTPUTS = 5


class ResidualBlock(nn.Module):
    """``n_convs`` 3x3x3 convolutions with ReLU, plus the input. (B, C, D, H, W) -> (B, C, D, H, W)."""

    def __init__(self, channels: int, n_convs: int):
        super().__init__()
        layers = []
        for _ in range(n_convs):
            layers += [nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        for conv in self.body:
            if isinstance(conv, nn.Conv3d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.body[-2].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class InverseNet(nn.Module):
    """Masks to growth parameters.

    Input: (B, C, D, H, W) float, the channels of :mod:`~TumorPersonalizationLib.lmi.inputs` (C = 6).
    Output: (B, 5) float, (mu1, mu2, seed offset i, j, k) scaled to [-1, 1] by
    :class:`~TumorPersonalizationLib.lmi.parameters.TargetScaling`.
    """

    def __init__(self, in_channels: int = 6, width: int = 16, stem_kernel: int = 7, blocks: int = 4,
                 convs_per_block: int = 4):
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(nn.Conv3d(in_channels, width, stem_kernel, stride=2, padding=stem_kernel // 2),
                                  nn.ReLU(inplace=True))
        nn.init.kaiming_normal_(self.stem[0].weight, nonlinearity="relu")
        nn.init.zeros_(self.stem[0].bias)
        stages = []
        for b in range(blocks):
            stages.append(ResidualBlock(width, convs_per_block))
            if b < blocks - 1:
                stages.append(nn.MaxPool3d(2))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(width, N_OUTPUTS)

    @classmethod
    def from_config(cls, config: dict) -> "InverseNet":
        n = config["network"]
        return cls(n["in_channels"], n["width"], n["stem_kernel"], n["blocks"], n["convs_per_block"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"InverseNet expects (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        features = self.stages(self.stem(x))
        return self.head(features.mean(dim=(2, 3, 4)))
