"""Small residual CNN for denoising (scale 1) and x2 / x4 super-resolution.

One network family, EDSR-style [1]_ without batch norm: a head convolution, ``n_blocks``
residual blocks (conv - ReLU - conv + skip) at the *input* resolution, a tail convolution to
``scale**2`` channels and a pixel shuffle [2]_ to the output grid. The network predicts a
correction to a fixed base image (the input itself for denoising, its bicubic upsampling for
super-resolution), so an untrained network already returns the classical answer and training
only has to learn the residual detail.

References
----------
.. [1] Lim et al., "Enhanced deep residual networks for single image super-resolution",
   CVPR Workshops (2017).
.. [2] Shi et al., "Real-time single image and video super-resolution using an efficient
   sub-pixel convolutional neural network", CVPR (2016).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class EnhanceConfig:
    """Constructor arguments of :class:`EnhanceNet`; stored in the model card."""

    scale: int = 1
    channels: int = 32
    n_blocks: int = 4

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1 (denoise), 2 or 4, got {self.scale}")
        if self.channels < 1 or self.n_blocks < 0:
            raise ValueError("channels must be >= 1 and n_blocks >= 0")


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class EnhanceNet(nn.Module):
    """Residual CNN: ``(N, 1, H, W)`` in [0, 1] -> ``(N, 1, scale*H, scale*W)``."""

    def __init__(self, config: EnhanceConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.head = nn.Conv2d(1, c, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(c) for _ in range(config.n_blocks)])
        self.tail = nn.Conv2d(c, config.scale**2, 3, padding=1)
        # Zero-init the tail so training starts from the base image (identity / bicubic).
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def halo(self) -> int:
        """Receptive-field radius in input pixels: tiles need this much context on each side."""
        convs = 2 + 2 * self.config.n_blocks
        return convs + (2 if self.config.scale > 1 else 0)  # + bicubic kernel radius

    def base(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.scale == 1:
            return x
        return F.interpolate(x, scale_factor=self.config.scale, mode="bicubic", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x - 0.5)
        feat = feat + self.body(F.relu(feat))
        residual = self.tail(feat)
        if self.config.scale > 1:
            residual = F.pixel_shuffle(residual, self.config.scale)
        return self.base(x) + residual


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
