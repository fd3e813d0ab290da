"""The inverse network of Learn-Morph-Infer: tumor masks in atlas space -> (mu1, mu2, seed i, j, k) in [-1, 1].

ResNet-style as in the thesis (chapter 7, Fig. 2), without BatchNorm: a stride-2 convolution (kernel
``stem_kernel``) to ``width`` channels, ``blocks`` residual blocks of ``convs_per_block`` 3x3x3 convolutions each
(ReLU after every convolution, the block input added to its output), a 2x max-pool after every block but the last,
global average pooling and a head: a small MLP (``head_hidden`` units, ReLU, linear) that also receives
:class:`LesionStatistics`.

Why that head and not the thesis' single linear layer: the thesis' network, trained here, was worse at mu1 and mu2
than a least-squares fit on the two mask volumes and their tissue fractions (docs/methods/lmi.md, "Head"). After
global average pooling a linear head can only output a linear combination of spatial averages, while mu1 and mu2
depend on them nonlinearly (the lesion's radius goes as the cube root of its volume); and the max-pooling between
blocks blurs the masks' extent to a few voxels, so the volumes must be learnt by the convolutions, which a small
network trained for minutes does poorly. Handing the head the volumes it needs lets the convolutions learn the
shape. The thesis' size is width 64 on 128^3 with one input channel; the CPU config uses width 24 on a 40^3
lesion-centred crop with six channels (:mod:`.inputs`, ``Resources/LMI/config.json``).

Initialisation: He (Kaiming) normal for every convolution as in the thesis, except the last convolution of each
residual block, which starts at zero so every block starts as the identity; without BatchNorm this keeps the
activations' scale from growing with depth at the start of training.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .inputs import N_CHANNELS
from .labels import FLAIR_WEIGHT, T1GD_WEIGHT
from .weights import load_state, read_weights_file

N_OUTPUTS = 5
WEIGHTS_NAME = "inverse_net.pt"
"""The trained network's file name (``Resources/LMI/inverse_net.pt``; written by ``Scripts/lmi_train.py``)."""
CORE_ABOVE, LESION_ABOVE = FLAIR_WEIGHT + 0.5 * T1GD_WEIGHT, 0.5 * FLAIR_WEIGHT
"""Input channel 0 above these: enhancing core (0.999), whole lesion (0.333 or 0.999)."""


def grid_voxel_ml(config: dict) -> float:
    """Volume (mL) of one voxel of the config's network grid."""
    return float(config["grid"]["spacing_mm"]) ** 3 / 1000.0


def check_network_config(config: dict) -> None:
    """InputError unless the config's ``network`` section describes the network this version builds: six input
    channels (:mod:`.inputs`), an MLP head (``head_hidden`` > 0) fed the lesion statistics."""
    n = config["network"]
    if int(n["in_channels"]) != N_CHANNELS:
        raise InputError(f"config: network.in_channels is {n['in_channels']}, but the network input has "
                         f"{N_CHANNELS} channels (lmi/inputs.py)")
    if not (int(n.get("head_hidden", 0)) > 0 and n.get("lesion_statistics", False)):
        raise InputError("config: this version builds the inverse network with an MLP head fed the lesion "
                         "statistics (network.head_hidden > 0, network.lesion_statistics true)")


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


class LesionStatistics(nn.Module):
    """Summary numbers of the lesion, computed (not learnt) from the input channels of :mod:`..inputs`.

    Input: (B, C, D, H, W), channel 0 = 0 / 0.333 (FLAIR only) / 0.999 (T1Gd), channels 1, 2 = WM, GM.
    Output: (B, 6) float: [log volume of the core, log volume of the whole lesion, mean WM under the core, mean GM
    under the core, mean WM under the lesion, mean GM under the lesion], shifted and scaled to order one (the
    network has no normalisation layer; with the raw logs, 3-9, a trial at the same budget was ~10 % worse at mu1,
    docs/methods/lmi.md, "Head"). Volumes are in mL, ``log(mL + ML_FLOOR)``, so the numbers mean the same on any grid
    spacing; the floor (one 3 mm voxel) keeps an empty core finite. Only the crop is counted: a lesion wider than
    the crop is cut.

    Parameters
    ----------
    voxel_ml : float
        Volume of one input voxel in mL (0.027 for 3 mm).
    """

    N_FEATURES = 6
    ML_FLOOR = 0.027
    LOG_ML_CENTRE, LOG_ML_SCALE = 2.388082, 1.5  # centre: log(10.9 mL), e^6 voxels of 3 mm
    TISSUE_CENTRE, TISSUE_SCALE = 0.4, 0.3

    def __init__(self, voxel_ml: float = 0.027):
        super().__init__()
        if not voxel_ml > 0:
            raise ValueError(f"LesionStatistics: voxel_ml must be positive, got {voxel_ml}")
        self.voxel_ml = float(voxel_ml)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = torch.stack([x[:, 0] > CORE_ABOVE, x[:, 0] > LESION_ABOVE], dim=1).to(x.dtype)
        voxels = masks.sum(dim=(2, 3, 4))
        tissue = torch.einsum("bmdhw,btdhw->bmt", masks, x[:, 1:3]) / voxels.clamp(min=1.0)[..., None]
        log_ml = (torch.log(voxels * self.voxel_ml + self.ML_FLOOR) - self.LOG_ML_CENTRE) / self.LOG_ML_SCALE
        return torch.cat([log_ml, (tissue.flatten(1) - self.TISSUE_CENTRE) / self.TISSUE_SCALE], dim=1)


class InverseNet(nn.Module):
    """Masks to growth parameters.

    Input: (B, C, D, H, W) float, the channels of :mod:`~TumorPersonalizationLib.lmi.inputs` (C = 6).
    Output: (B, 5) float, (mu1, mu2, seed offset i, j, k) scaled to [-1, 1] by
    :class:`~TumorPersonalizationLib.lmi.parameters.TargetScaling`.
    """

    def __init__(self, in_channels: int = N_CHANNELS, width: int = 16, stem_kernel: int = 7, blocks: int = 4,
                 convs_per_block: int = 4, head_hidden: int = 64, voxel_ml: float = 0.027):
        super().__init__()
        self.in_channels = in_channels
        self.statistics = LesionStatistics(voxel_ml)
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
        pooled = width + LesionStatistics.N_FEATURES
        self.head = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(head_hidden, N_OUTPUTS))

    @classmethod
    def from_config(cls, config: dict) -> "InverseNet":
        check_network_config(config)
        n = config["network"]
        return cls(n["in_channels"], n["width"], n["stem_kernel"], n["blocks"], n["convs_per_block"],
                   n["head_hidden"], grid_voxel_ml(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"InverseNet expects (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        features = self.stages(self.stem(x)).mean(dim=(2, 3, 4))
        return self.head(torch.cat([self.statistics(x), features], dim=1))


def load_network(path, device: str = "cpu") -> tuple[InverseNet, dict]:
    """Load trained weights (``torch.load(weights_only=True)``): the network in eval mode and its config."""
    saved = read_weights_file(path, {"state_dict", "config"}, "LMI weights", device,
                              hint=f" (a training checkpoint? use {WEIGHTS_NAME})")
    model = InverseNet.from_config(saved["config"]).to(device)
    load_state(model, saved, path, "LMI weights")
    return model, saved["config"]
