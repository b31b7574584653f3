"""A small SliceGAN: a 3D generator trained with 2D discriminators on its x, y and z slices [1]_.

Architecture (after the published SliceGAN, scaled down to train in minutes on one CPU thread):

- generator: a latent ``nz x L^3`` normal tensor, four ``ConvTranspose3d(k=4, s=2)`` layers
  (padding 2, 2, 2, 3; batch norm + ReLU between them), softmax over the 3 phases (pore, NMC,
  CBD). A 4^3 latent gives a 32^3 volume; a latent of side L gives 16 L - 32 per side, so any
  size from 16 to 256 is made from a larger latent and cropped. The original uses five layers,
  channels up to 512 and a 64^3 output; this one has ~0.2 M parameters.
- three critics, one per axis, 2D convolutions on 32 x 32 one-hot slices of the real training
  volume along that axis vs the generator's slices along the same axis; Wasserstein loss with
  gradient penalty [2]_.

Porosity conditioning (not learned): the generator is unconditional. :func:`sample` adds one
scalar to the pore log-probability of every voxel, found by bisection so that the argmax label
volume has the requested porosity; NMC and CBD keep the generator's ratio.

References
----------
.. [1] Kench & Cooper, "Generating three-dimensional structures from a two-dimensional slice
   with generative adversarial network-based dimensionality expansion", Nat. Mach. Intell. 3
   (2021) 299.
.. [2] Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from battgai.microstructure.generation.generator import check_sample_args

MODEL_NAME = "microstructure_slicegan"
N_PHASES = 3


@dataclasses.dataclass(frozen=True)
class SliceGANConfig:
    """Generator shape; stored in the model card."""

    nz: int = 16
    channels: tuple[int, ...] = (64, 32, 16)
    n_phases: int = N_PHASES

    def __post_init__(self) -> None:
        if len(self.channels) != 3:
            raise ValueError(f"the generator has four layers: give 3 hidden channel counts, got {self.channels}")


def _modules():
    """Build the torch module classes lazily (keeps ``import battgai.microstructure.generation.slicegan`` light)."""
    import torch
    from torch import nn

    class Generator(nn.Module):
        def __init__(self, config: SliceGANConfig):
            super().__init__()
            self.config = config
            widths = (config.nz, *config.channels, config.n_phases)
            pads = (2, 2, 2, 3)
            layers: list[nn.Module] = []
            for i, (cin, cout, pad) in enumerate(zip(widths[:-1], widths[1:], pads, strict=True)):
                layers.append(nn.ConvTranspose3d(cin, cout, 4, 2, pad, bias=False))
                if i < len(pads) - 1:
                    layers += [nn.BatchNorm3d(cout), nn.ReLU()]
            self.net = nn.Sequential(*layers)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            """Phase logits, shape (batch, n_phases, 16 L - 32, ...) for a latent of side L."""
            return self.net(z)

    class Critic(nn.Module):
        """2D WGAN critic on 32 x 32 one-hot slices (no batch norm: the gradient penalty is per sample)."""

        def __init__(self, n_phases: int = N_PHASES, widths: tuple[int, ...] = (32, 64, 64)):
            super().__init__()
            layers: list[nn.Module] = []
            cin = n_phases
            for cout in widths:
                layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
                cin = cout
            layers.append(nn.Conv2d(cin, 1, 4, 1, 0))
            self.net = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).flatten(1).mean(1)

    return Generator, Critic


def build_generator(config: SliceGANConfig):
    """An untrained :class:`Generator` for ``config``."""
    return _modules()[0](config)


def build_critic(n_phases: int = N_PHASES):
    """An untrained 2D slice critic (used in training only; critics are not bundled)."""
    return _modules()[1](n_phases)


def latent_side(side: int) -> int:
    """Smallest latent side whose output (16 L - 32) covers ``side`` voxels."""
    return max(4, math.ceil((side + 32) / 16))


#: Latent planes run through the generator at once (more would only cost memory), and the latent
#: margin around them whose outputs are discarded; an output voxel depends on latent planes
#: within +-2, so the slab-wise output equals the whole-volume output (checked in the tests).
SLAB, MARGIN = 4, 2


def probabilities(model, shape: tuple[int, int, int], seed: int = 0):
    """Phase log-probabilities, a (n_phases, *shape) float32 array, from the generator in eval mode.

    The latent is drawn whole, then decoded in slabs of :data:`SLAB` latent planes along the
    first axis to bound memory (in one pass a 256^3 volume holds several 16 x 258^3 float32
    activations, ~1.1 GB each).
    """
    import torch

    lat = [latent_side(s) for s in shape]
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((1, model.config.nz, *lat), generator=gen)
    # Centre crop: the borders of a transposed-conv stack see fewer latent values.
    starts = [(16 * n - 32 - s) // 2 for n, s in zip(lat, shape, strict=True)]
    model.eval()
    parts = []
    with torch.no_grad():
        for a in range(0, lat[0], SLAB):
            lo, hi = max(0, a - MARGIN), min(lat[0], a + SLAB + MARGIN)
            out = model(z[:, :, lo:hi])[0]
            # Slab output index j is whole-volume output index j + 16 lo (stride 2 in each of 4 layers).
            first, last = max(16 * a, starts[0]), min(16 * (a + SLAB), starts[0] + shape[0])
            if last > first:
                parts.append(out[:, first - 16 * lo:last - 16 * lo,
                                 starts[1]:starts[1] + shape[1], starts[2]:starts[2] + shape[2]])
        logp = torch.log_softmax(torch.cat(parts, dim=1), dim=0)
    return logp.numpy()


def shift_to_porosity(logp: np.ndarray, porosity: float, iterations: int = 50) -> np.ndarray:
    """Argmax labels after adding one scalar to the pore (phase 0) log-probability.

    The scalar is found by bisection so that the fraction of pore voxels is as close to
    ``porosity`` as the bisection allows (it is monotonic in the shift).
    """
    others = logp[1:].max(axis=0)
    margin = logp[0] - others  # pore wins where margin + shift > 0
    lo, hi = -float(margin.max()) - 1.0, -float(margin.min()) + 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if float((margin + mid > 0).mean()) < porosity:
            lo = mid
        else:
            hi = mid
    shift = lo if abs((margin + lo > 0).mean() - porosity) <= abs((margin + hi > 0).mean() - porosity) else hi
    labels = 1 + np.argmax(logp[1:], axis=0).astype(np.uint8)
    labels[margin + shift > 0] = 0
    return labels


def sample(model, porosity: float, shape: tuple[int, ...] = (64, 64, 64), seed: int = 0) -> np.ndarray:
    """Generate a label image (0 pore, 1 NMC, 2 CBD) at the requested porosity.

    Parameters
    ----------
    model : Generator
        From :func:`load` (bundled) or :func:`battgai.microstructure.train.train_slicegan`.
    porosity : float
        Target pore volume fraction, 0.05 to 0.95; met by the pore-logit shift of
        :func:`shift_to_porosity`.
    shape : tuple of int
        2D (the middle z slice of a 32-deep volume) or 3D, each side 16 to 256.
    seed : int
        Same seed, same sample.

    Examples
    --------
    >>> vol = sample(load(), porosity=0.4, shape=(32, 32, 32), seed=1)
    >>> round(float((vol == 0).mean()), 2)
    0.4
    """
    shape = check_sample_args(shape, porosity)
    # 2D: the middle slice of a 32-deep volume (the generator is 3D only).
    logp = probabilities(model, (32, *shape), seed)[:, 16] if len(shape) == 2 else probabilities(model, shape, seed)
    return shift_to_porosity(logp, porosity)


def load(name: str = MODEL_NAME):
    """Rebuild the bundled generator from its card (sha256-checked), in eval mode on the CPU."""
    from battgai.core import registry

    state, card = registry.load_tensors(name, "cpu")
    config = dict(card.config)
    model = build_generator(SliceGANConfig(nz=config["nz"], channels=tuple(config["channels"]),
                                           n_phases=config["n_phases"]))
    model.load_state_dict(state)
    return model.eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
