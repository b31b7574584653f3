"""Train the bundled microstructure models: ``python -m battgai.train microstructure --model NAME``.

``NAME`` is ``denoise``, ``sr_x2``, ``sr_x4`` (the residual CNNs of :mod:`.model`) or
``generator`` (the fitted Gaussian level-cut generator of :mod:`.generator`). Pairs are made on the fly: a random
clean patch from the training split (:func:`battgai.microstructure.io.training_images`) is
degraded by :mod:`.degrade`; the loss is L1. Training is CPU-sized (one thread, minutes); the
schedule is cosine over the planned steps or the ``--max-minutes`` budget, whichever ends first.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from battgai.microstructure import degrade

MODELS = ("denoise", "sr_x2", "sr_x4", "generator")
RETRAIN = "python -m battgai.train microstructure --model {name}"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str = "denoise"
    steps: int = 600
    batch: int = 16
    lr: float = 1e-3
    seed: int = 0
    max_minutes: float = 12.0
    channels: int = 32
    n_blocks: int = 4

    @property
    def scale(self) -> int:
        return {"denoise": 1, "sr_x2": 2, "sr_x4": 4}[self.model]

    @property
    def patch(self) -> int:
        """High-resolution patch side: 48 px for the denoiser, 32 low-res px for SR."""
        return 48 if self.scale == 1 else 32 * self.scale


def make_pair(image: np.ndarray, scale: int, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (degraded input, clean target) training pair from a random patch of ``image``."""
    h, w = image.shape
    y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
    clean = image[y:y + patch, x:x + patch]
    # Random flips / transposes: microstructure statistics have no preferred in-plane direction.
    if rng.random() < 0.5:
        clean = clean[::-1]
    if rng.random() < 0.5:
        clean = clean.T
    clean = np.ascontiguousarray(clean)
    noisy = degrade.random_noise(clean, rng) if scale == 1 else degrade.random_lowres(clean, scale, rng)
    return noisy, clean


def train_enhancer(config: TrainConfig, images: list[np.ndarray], log=print):
    """Train an :class:`~battgai.microstructure.model.EnhanceNet`.

    Returns
    -------
    model : EnhanceNet
        On the CPU, in eval mode.
    steps : int
        Steps actually run (fewer than ``config.steps`` when the time budget ran out).
    """
    import torch

    from battgai.microstructure.model import EnhanceConfig, EnhanceNet

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images = [im for im in images if min(im.shape) >= config.patch]
    if not images:
        raise ValueError(f"no training image is at least {config.patch} px on each side")
    weights = np.array([im.size for im in images], float)
    weights /= weights.sum()
    model = EnhanceNet(EnhanceConfig(scale=config.scale, channels=config.channels, n_blocks=config.n_blocks))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    start = time.time()
    steps = 0
    for step in range(config.steps):
        # Cosine schedule over whichever runs out first, the steps or the time budget, so a run
        # cut short by the clock still ends at a small learning rate.
        progress = min(1.0, max(step / config.steps, (time.time() - start) / 60 / config.max_minutes))
        lr = 1e-5 + 0.5 * (config.lr - 1e-5) * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        pairs = [make_pair(images[rng.choice(len(images), p=weights)], config.scale, config.patch, rng)
                 for _ in range(config.batch)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
        loss = torch.nn.functional.l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps = step + 1
        minutes = (time.time() - start) / 60
        if step % 25 == 0 or step == config.steps - 1:
            log(f"step {step:5d}  loss {loss.item():.4f}  lr {lr:.2e}  {minutes:.1f} min")
        if minutes >= config.max_minutes:
            log(f"stopping at step {step}: time budget of {config.max_minutes} min reached")
            break
    return model.eval(), steps


def save_enhancer(model, config: TrainConfig, steps_done: str, log=print):
    """Measure on held-out images and bundle weights + card through the registry."""
    from battgai import registry
    from battgai.microstructure import bench, io
    from battgai.microstructure.enhance import MODEL_NAMES
    from battgai.microstructure.model import count_parameters

    name = MODEL_NAMES["denoise" if config.scale == 1 else config.scale]
    images = io.heldout_images()
    metrics = bench.model_metrics(model, images)
    log(f"held-out metrics: {metrics}")
    task = "denoising" if config.scale == 1 else f"x{config.scale} super-resolution"
    card = registry.ModelCard(
        name=name,
        task="microstructure",
        architecture=f"EDSR-style residual CNN for {task} (no batch norm, pixel shuffle, residual "
                     "over the input / bicubic base)",
        config=dataclasses.asdict(model.config),
        parameters=count_parameters(model),
        training_data="Clean patches from: raw NMC811 X-ray nano-CT slice (Li et al., Science 2022; "
                      "YijinLiu-Lab/ParticleNetworkDynamics, GPL-3.0) and grey images rendered from "
                      "segmented NMC data (TauFactor electrode, MIT; NREL MATBOX nmc-1-cal, BSD-3; "
                      "tldr-group inpainter nmc.png, MIT), degraded on the fly by battgai.microstructure."
                      "degrade (" + ("Poisson/Gaussian noise, CT rings and streaks, SEM scan lines"
                                     if config.scale == 1 else "Gaussian blur + pixel binning + mild noise")
                      + ").",
        split="Held-out region: raw slice columns 1536-2047 (training uses 0-1471). Held-out images: "
              "Dahari large_slice_nmc.tif (centre 512^2) and sem_image_half.tif (512^2), rendered; "
              "never used in training (nor the SEM stack / crop facets that overlap them).",
        metrics=metrics,
        metrics_command="python -m battgai.bench microstructure",
        retrain_command=RETRAIN.format(name=config.model),
        notes=f"Trained on CPU with 1 thread: {steps_done}, batch {config.batch}, patch {config.patch} px, "
              f"Adam lr {config.lr} cosine, L1 loss, seed {config.seed}. Metrics: PSNR / SSIM in dB / [0,1] on "
              "the held-out images with the fixed degradations of battgai.microstructure.bench.",
    )
    state = {k: v for k, v in model.state_dict().items()}
    return registry.save(name, state, card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m battgai.train microstructure", description=__doc__)
    parser.add_argument("--model", choices=MODELS, default="denoise")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget (default: 15 for denoise, 12 for SR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.model == "generator":
        from battgai.microstructure import generator

        generator.train_and_save(seed=args.seed)
        return
    from battgai.microstructure import io

    defaults = {"denoise": TrainConfig(model="denoise", steps=1400, max_minutes=15.0),
                "sr_x2": TrainConfig(model="sr_x2", steps=6000, channels=16),
                "sr_x4": TrainConfig(model="sr_x4", steps=2000)}[args.model]
    config = dataclasses.replace(defaults, seed=args.seed, max_minutes=args.max_minutes or defaults.max_minutes,
                                 steps=args.steps or defaults.steps)
    images = io.training_images()
    print(f"{args.model}: {len(images)} training images, {sum(im.size for im in images) / 1e6:.1f} Mpx")
    start = time.time()
    model, steps = train_enhancer(config, images)
    done = f"{steps} of {config.steps} planned steps in {(time.time() - start) / 60:.1f} min"
    card = save_enhancer(model, config, done)
    print(f"saved {card.name}: {card.size_bytes / 1e3:.0f} kB, sha256 {card.sha256[:12]}")
