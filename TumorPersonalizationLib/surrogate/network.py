"""The geometry-aware encoder-decoder of the thesis (chapter 5, Sec. II-2 and Fig. 1): anatomy + parameters -> density.

Layout (thesis Fig. 1, after Kim et al.'s "Deep Fluids" generator, the thesis' ref. [35]):

- **Anatomy encoder.** A 3x3x3 convolution lifts the WM / GM / CSF crop to ``channels[0]`` channels; then, per
  level, a residual block (``convs_per_block`` pairs of 3x3x3 convolution and ReLU, the block's input added to its
  output) and a stride-2 3x3x3 convolution that halves the grid and moves to the next level's channels. After
  ``levels`` halvings a last residual block reads the bottleneck (8^3 for a 64^3 crop).
- **Parameters.** The normalised parameter vector (N, P) goes through one linear layer to
  ``parameter_channels`` x bottleneck^3 values, reshaped to a volume and concatenated with the encoded anatomy
  (thesis: "mapped via a fully connected layer to a tensor of size 8x8x8x3 and concatenated").
- **Decoder.** A 3x3x3 convolution mixes the two, then per level a residual block, nearest-neighbour upsampling by 2
  (thesis ref. [39]: no checkerboard artefacts of transposed convolutions) and a 3x3x3 convolution to the finer
  level's channels; a last residual block at full resolution and a 3x3x3 convolution to one channel.
- **No skip connections** between encoder and decoder: the thesis' U-Net ablation (Table I a) lost 0.23 Dice,
  because the skips let the anatomy dominate the parameter dependence.

The thesis keeps 128 channels at every level. ``channels`` lists one width per level (finest first) so a CPU
config can grow the width where the grid is small, which is where the parameters and the anatomy meet; the config
files record the choice and docs/methods/surrogate.md the arithmetic.

Output range: the last convolution's value is clamped to [0, 1] in the forward pass but its gradient passes as if
unclamped (a straight-through clamp). A sigmoid would also keep the output in [0, 1], but with the L1 loss its
gradient vanishes where the prediction is saturated on the wrong side (the whole tumor at the start of training),
and it never reaches the exact zeros of the tumor-free brain.

Initialisation: He (Kaiming) normal, with the last convolution of each residual block at zero so every block starts
as the identity (there is no normalisation layer; this keeps activations from growing with depth at the start).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

N_TISSUE_CHANNELS = 3
"""Input channels: WM, GM, CSF probabilities in [0, 1], in this order."""


def check_network_config(network: dict, crop_size: int, n_parameters: int) -> None:
    """InputError unless ``network`` (a config's ``network`` section) builds a network for ``crop_size``^3 crops.

    The crop must halve ``levels`` times to a whole number of voxels, and ``channels`` must give one width per level
    (``levels + 1`` entries, finest first).
    """
    levels = int(network["levels"])
    channels = list(network["channels"])
    if levels < 1 or len(channels) != levels + 1 or min(channels) < 1:
        raise InputError(f"surrogate config: network.channels needs levels + 1 = {levels + 1} positive widths, "
                         f"got {channels}")
    if crop_size % (2 ** levels) != 0:
        raise InputError(f"surrogate config: crop size {crop_size} does not halve {levels} times to whole voxels")
    if int(network["convs_per_block"]) < 1 or int(network["parameter_channels"]) < 1 or n_parameters < 1:
        raise InputError("surrogate config: convs_per_block, parameter_channels and the parameter count must be >= 1")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv3d:
    conv = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class ResidualBlock(nn.Module):
    """``n_convs`` (3x3x3 convolution, ReLU) pairs plus the input: (N, C, d, d, d) -> (N, C, d, d, d)."""

    def __init__(self, channels: int, n_convs: int):
        super().__init__()
        layers = []
        for _ in range(n_convs):
            layers += [_conv(channels, channels), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-2].weight)  # the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _StraightThroughClamp(torch.autograd.Function):
    """Clamp to [0, 1] forward; pass the gradient through unchanged backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        return grad


class SurrogateNet(nn.Module):
    """Tissue crop and growth parameters to tumor cell density.

    Parameters
    ----------
    crop_size : int
        Edge D of the cubic crop (voxels); divisible by 2**levels.
    n_parameters : int
        Length P of the parameter vector (3: Dw, rho, T, normalised as :mod:`.config` says).
    channels : sequence of int
        Width at each level, finest first (``levels + 1`` entries).
    convs_per_block : int
        Convolution + ReLU pairs in each residual block (the thesis' N).
    parameter_channels : int
        Channels of the parameter volume joined at the bottleneck (thesis: 3).

    Forward
    -------
    tissue : torch.Tensor, (N, 3, D, D, D) float32
        WM, GM, CSF probabilities in [0, 1] on the crop, the seed at voxel (D // 2, D // 2, D // 2).
    parameters : torch.Tensor, (N, P) float32
        Normalised parameters (each in [0, 1] over the trained range).
    returns : torch.Tensor, (N, 1, D, D, D) float32
        Tumor cell density in [0, 1].
    """

    def __init__(self, crop_size: int, n_parameters: int, channels=(16, 16, 16, 16), convs_per_block: int = 2,
                 parameter_channels: int = 3):
        super().__init__()
        channels = [int(c) for c in channels]
        levels = len(channels) - 1
        check_network_config({"levels": levels, "channels": channels, "convs_per_block": convs_per_block,
                              "parameter_channels": parameter_channels}, crop_size, n_parameters)
        self.crop_size, self.n_parameters = int(crop_size), int(n_parameters)
        self.bottleneck = self.crop_size // 2 ** levels
        self.parameter_channels = int(parameter_channels)

        encoder = [_conv(N_TISSUE_CHANNELS, channels[0]), nn.ReLU(inplace=True)]
        for level in range(levels):
            encoder += [ResidualBlock(channels[level], convs_per_block),
                        _conv(channels[level], channels[level + 1], stride=2), nn.ReLU(inplace=True)]
        encoder.append(ResidualBlock(channels[-1], convs_per_block))
        self.encoder = nn.Sequential(*encoder)

        self.parameter_embedding = nn.Linear(self.n_parameters, self.parameter_channels * self.bottleneck ** 3)

        decoder = [_conv(channels[-1] + self.parameter_channels, channels[-1]), nn.ReLU(inplace=True)]
        for level in reversed(range(levels)):
            decoder += [ResidualBlock(channels[level + 1], convs_per_block),
                        nn.Upsample(scale_factor=2, mode="nearest"),
                        _conv(channels[level + 1], channels[level]), nn.ReLU(inplace=True)]
        decoder.append(ResidualBlock(channels[0], convs_per_block))
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv3d(channels[0], 1, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, config: dict) -> "SurrogateNet":
        """The network a surrogate config describes (``crop.size``, ``parameters``, ``network``)."""
        n = config["network"]
        return cls(int(config["crop"]["size"]), len(config["parameters"]), n["channels"], int(n["convs_per_block"]),
                   int(n["parameter_channels"]))

    def forward(self, tissue: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
        d = self.crop_size
        if tissue.ndim != 5 or tuple(tissue.shape[1:]) != (N_TISSUE_CHANNELS, d, d, d):
            raise ValueError(f"SurrogateNet expects tissue (N, {N_TISSUE_CHANNELS}, {d}, {d}, {d}), "
                             f"got {tuple(tissue.shape)}")
        if parameters.ndim != 2 or parameters.shape != (tissue.shape[0], self.n_parameters):
            raise ValueError(f"SurrogateNet expects parameters ({tissue.shape[0]}, {self.n_parameters}), "
                             f"got {tuple(parameters.shape)}")
        b = self.bottleneck
        encoded = self.encoder(tissue)
        embedded = self.parameter_embedding(parameters).view(-1, self.parameter_channels, b, b, b)
        decoded = self.decoder(torch.cat([encoded, embedded], dim=1))
        return _StraightThroughClamp.apply(self.head(decoded))
