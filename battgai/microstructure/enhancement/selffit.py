"""Fit the denoiser to the researcher's own image: Noise2Void blind-spot fine-tuning, no clean image needed.

Krull, Buchholz and Jug, "Noise2Void - learning denoising from single noisy images",
CVPR 2019: a network that must predict a pixel it cannot see learns the signal
(predictable from the neighbours) and not the noise (independent from pixel to
pixel). Each step takes random patches of the image, replaces a few pixels in each
by a random neighbour within 5 x 5 (the blind spots) and trains the network to
give the *noisy* values there, starting from the bundled denoiser. The loss is
only computed at the blind spots. A wall-clock budget bounds the fit (60 s on
2 CPU cores with the defaults, inference included).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import numpy as np

Progress = Callable[[int, int], None]


#: Training budget of the page's "fit the denoiser to this image" (scoring and inference come on top).
PAGE_SECONDS = 40.0


@dataclasses.dataclass(frozen=True)
class FitConfig:
    seconds: float = 40.0  # training budget; inference and scoring come on top
    max_steps: int | None = None  # stop earlier after this many steps (tests, reproducible runs)
    patch: int = 48
    batch: int = 16
    blind_fraction: float = 0.02  # share of each patch's pixels that are blind spots
    lr: float = 2e-4
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FitReport:
    steps: int
    seconds: float
    loss_start: float  # blind-spot MSE over the first 20 steps
    loss_end: float  # and over the last 20
    config: FitConfig


def _batch(image: np.ndarray, cfg: FitConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs with blind spots, noisy targets, mask) of ``cfg.batch`` random patches (2D or stack)."""
    p = cfg.patch
    stack = image[None] if image.ndim == 2 else image
    z = rng.integers(0, len(stack), cfg.batch)
    y = rng.integers(0, stack.shape[1] - p + 1, cfg.batch)
    x = rng.integers(0, stack.shape[2] - p + 1, cfg.batch)
    target = np.stack([stack[k, a:a + p, b:b + p] for k, a, b in zip(z, y, x, strict=True)]).astype(np.float32)
    if rng.random() < 0.5:
        target = target[:, :, ::-1]
    target = np.rot90(target, int(rng.integers(4)), axes=(1, 2)).copy()
    inputs = target.copy()
    mask = np.zeros_like(target, dtype=bool)
    n = max(1, int(cfg.blind_fraction * p * p))
    for i in range(cfg.batch):
        py, px = rng.integers(0, p, n), rng.integers(0, p, n)
        # A random neighbour within 5 x 5, never the pixel itself (N2V's uniform pixel manipulation).
        dy, dx = rng.integers(-2, 3, n), rng.integers(-2, 3, n)
        same = (dy == 0) & (dx == 0)
        dx[same] = 1
        inputs[i, py, px] = target[i, np.clip(py + dy, 0, p - 1), np.clip(px + dx, 0, p - 1)]
        mask[i, py, px] = True
    return inputs, target, mask


def fit(image: np.ndarray, model, config: FitConfig | None = None, progress: Progress | None = None):
    """Fine-tune a copy of ``model`` (an :class:`EnhanceNet`, scale 1) on ``image`` by Noise2Void.

    Parameters
    ----------
    image : ndarray, float in [0, 1], 2D or a stack ``(Z, H, W)``; each slice at least ``patch`` pixels
    model : EnhanceNet
        The starting point (the bundled denoiser); it is not changed.
    progress : callable(done, total), optional
        Called with elapsed and budgeted tenths of a second.

    Returns
    -------
    model : EnhanceNet
        The fitted copy, in eval mode.
    report : FitReport
    """
    import torch

    cfg = config or FitConfig()
    if image.ndim not in (2, 3) or min(image.shape[-2:]) < cfg.patch:
        raise ValueError(f"fitting needs a 2D image or stack with slices of at least {cfg.patch} x {cfg.patch} "
                         f"pixels, got shape {image.shape}")
    if model.config.scale != 1:
        raise ValueError("only the denoiser (scale 1) can be fitted to an image")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    net = copy.deepcopy(model).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    losses: list[float] = []
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < cfg.seconds and len(losses) < (cfg.max_steps or 1 << 62):
        inputs, target, mask = (torch.from_numpy(a[:, None]).to(device) for a in _batch(image, cfg, rng))
        out = net(inputs)
        loss = ((out - target)[mask] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(min(int(elapsed * 10), int(cfg.seconds * 10)), int(cfg.seconds * 10))
    head, tail = losses[:20], losses[-20:]
    report = FitReport(len(losses), time.perf_counter() - t0, float(np.mean(head)), float(np.mean(tail)), cfg)
    return net.eval(), report
