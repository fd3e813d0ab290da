"""The inverse network of Learn-Morph-Infer: tumor masks in atlas space -> (mu1, mu2, seed i, j, k) in [-1, 1].

ResNet-style as in the thesis (chapter 7, Fig. 2), without BatchNorm: a stride-2 convolution (kernel
``stem_kernel``) to ``width`` channels, ``blocks`` residual blocks of ``convs_per_block`` 3x3x3 convolutions each
(ReLU after every convolution, the block input added to its output), a 2x max-pool after every block but the last,
global average pooling and one linear layer. The thesis' size is width 64 on 128^3; the CPU config uses width 16 on
64^3 (``Resources/LMI/config.json``).

Position: the input gets three extra channels holding the voxel coordinates (-1 at one edge of the grid, +1 at
the other; "CoordConv", Liu et al. 2018). Global average pooling makes a plain ResNet nearly blind to where the
lesion is; with the thesis' architecture at our size (64^3, width 16) the seed was off by 25 mm on average in
validation, so the coordinates are given instead of being inferred from the zero padding.

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

    Input: (B, 1, D, H, W) float, the 0.666 T1Gd + 0.333 FLAIR image on the network grid (D, H, W divisible by
    2 ** blocks). Output: (B, 5) float, (mu1, mu2, seed i, j, k) scaled to [-1, 1] by
    :class:`~TumorPersonalizationLib.lmi.parameters.TargetScaling`.
    """

    def __init__(self, width: int = 16, stem_kernel: int = 7, blocks: int = 4, convs_per_block: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(4, width, stem_kernel, stride=2, padding=stem_kernel // 2),
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
        return cls(n["width"], n["stem_kernel"], n["blocks"], n["convs_per_block"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"InverseNet expects (B, 1, D, H, W), got {tuple(x.shape)}")
        axes = [torch.linspace(-1.0, 1.0, n, device=x.device, dtype=x.dtype) for n in x.shape[2:]]
        coordinates = torch.stack(torch.meshgrid(*axes, indexing="ij")).expand(x.shape[0], -1, -1, -1, -1)
        features = self.stages(self.stem(torch.cat([x, coordinates], dim=1)))
        return self.head(features.mean(dim=(2, 3, 4)))
