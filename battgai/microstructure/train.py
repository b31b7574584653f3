"""Train the bundled microstructure models: ``python -m battgai.train microstructure --model NAME``.

``NAME`` is ``denoise``, ``sr_x2``, ``sr_x4`` (the residual CNNs of :mod:`.model`),
``generator`` (the fitted Gaussian level-cut generator of :mod:`.generator`) or ``slicegan``
(the small SliceGAN of :mod:`.slicegan`, see :func:`train_slicegan`). Pairs are made on the fly: a random
clean patch from the training split (:func:`battgai.microstructure.io.training_images`) is
degraded by :mod:`.degrade`; the loss is L1. Training is CPU-sized (one thread, minutes); the
schedule is cosine over the planned steps or the ``--max-minutes`` budget, whichever ends first.
``--init NAME`` fine-tunes from registry weights instead of starting from the zero-tailed net, and
``--raw-fraction`` sets the share of patches cut from the raw X-ray slice (by default its share of
the training pixels, about a fifth).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from battgai.microstructure.enhancement import degrade

MODELS = ("denoise", "sr_x2", "sr_x4", "generator", "slicegan")
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
    #: Share of patches cut from ``images[0]`` (the raw slice in io.training_images); None: by image size.
    raw_fraction: float | None = None

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
    if scale > 1:
        return degrade.random_lowres(clean, scale, rng), clean
    clean = degrade.random_appearance(clean, rng)
    return degrade.random_noise(clean, rng), clean


def train_enhancer(config: TrainConfig, images: list[np.ndarray], log=print, init: dict | None = None):
    """Train an :class:`~battgai.microstructure.enhancement.model.EnhanceNet`, from scratch or from ``init``
    (a state dict).

    Returns
    -------
    model : EnhanceNet
        On the CPU, in eval mode.
    steps : int
        Steps actually run (fewer than ``config.steps`` when the time budget ran out).
    """
    import torch

    from battgai.microstructure.enhancement.model import EnhanceConfig, EnhanceNet

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if any(min(im.shape) < config.patch for im in images):
        raise ValueError(f"every training image must be at least {config.patch} px on each side")
    weights = np.array([im.size for im in images], float)
    weights /= weights.sum()
    if config.raw_fraction is not None and len(images) > 1:
        weights = np.concatenate([[config.raw_fraction], weights[1:] / weights[1:].sum() * (1 - config.raw_fraction)])
    model = EnhanceNet(EnhanceConfig(scale=config.scale, channels=config.channels, n_blocks=config.n_blocks))
    if init is not None:
        model.load_state_dict(init)
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


def save_enhancer(model, config: TrainConfig, steps_done: str, log=print, retrain: str | None = None,
                  init_note: str = ""):
    """Measure on held-out images and bundle weights + card through the registry.

    ``retrain`` is the command that made the weights (default: the plain one for the model);
    ``init_note`` says what the run started from, for the card's notes.
    """
    from battgai.core import registry
    from battgai.microstructure import io
    from battgai.microstructure.enhancement.enhance import MODEL_NAMES
    from battgai.microstructure.enhancement.evaluate import model_metrics
    from battgai.microstructure.enhancement.model import count_parameters

    name = MODEL_NAMES["denoise" if config.scale == 1 else config.scale]
    images = io.heldout_images()
    metrics = model_metrics(model, images)
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
                      "tldr-group inpainter nmc.png, MIT), degraded on the fly by "
                      "battgai.microstructure.enhancement.degrade ("
                      + ("Poisson-Gaussian, Poisson-only and pixel-correlated noise at several levels, "
                                     "CT rings and streaks, SEM scan lines; clean patches mildly blurred or "
                                     "gamma-mapped some of the time" if config.scale == 1
                                     else "Gaussian blur + pixel binning + mild noise") + ").",
        split="Held-out region: raw slice columns 1536-2047 (training uses 0-1471). Held-out images: "
              "Dahari large_slice_nmc.tif (centre 512^2) and sem_image_half.tif (512^2), rendered; "
              "never used in training (nor the SEM stack / crop facets that overlap them).",
        metrics=metrics,
        metrics_command="python -m battgai.bench microstructure",
        retrain_command=retrain or RETRAIN.format(name=config.model),
        notes=f"Trained on CPU with 1 thread: {steps_done}{init_note}, batch {config.batch}, patch {config.patch} px, "
              f"Adam lr {config.lr} cosine, L1 loss, seed {config.seed}"
              + (f", {100 * config.raw_fraction:.0f} % of patches from the raw slice"
                 if config.raw_fraction is not None else "")
              + ". Metrics: PSNR / SSIM in dB / [0,1] on the held-out images with the fixed degradations of "
              "battgai.microstructure.enhancement.evaluate.",
    )
    state = {k: v for k, v in model.state_dict().items()}
    return registry.save(name, state, card)


@dataclasses.dataclass(frozen=True)
class SliceGANTrainConfig:
    """WGAN-GP schedule of the SliceGAN (Adam betas and gradient penalty weight as in SliceGAN)."""

    steps: int = 4000  # generator steps; the time budget usually ends the run first
    batch: int = 4  # generated 32^3 volumes per step
    slices: int = 16  # slices per volume and axis shown to each critic
    critic_iters: int = 3
    gp_weight: float = 10.0
    lr: float = 2e-4
    seed: int = 0
    max_minutes: float = 15.0


def _one_hot_slices(volume, axis: int, count: int, side: int, rng: np.random.Generator):
    """``count`` random ``side`` x ``side`` one-hot patches of slices normal to ``axis`` of a label volume."""
    import torch

    moved = np.moveaxis(volume, axis, 0)
    n, h, w = moved.shape
    ks, ys, xs = rng.integers(0, n, count), rng.integers(0, h - side + 1, count), rng.integers(0, w - side + 1, count)
    patches = np.stack([moved[k, y:y + side, x:x + side] for k, y, x in zip(ks, ys, xs, strict=True)])
    return torch.nn.functional.one_hot(torch.from_numpy(patches.astype(np.int64)), 3).permute(0, 3, 1, 2).float()


def _fake_slices(fake, axis: int, count: int, rng: np.random.Generator):
    """``count`` random slices per volume normal to ``axis`` of a (batch, phases, d, h, w) tensor."""
    import torch

    moved = fake.movedim(2 + axis, 1)  # (batch, slice, phases, a, b)
    return torch.cat([moved[b, rng.choice(moved.shape[1], count, replace=False)] for b in range(moved.shape[0])])


def train_slicegan(config: SliceGANTrainConfig, log=print):
    """Train the SliceGAN on the training half (z < 128) of the TauFactor volume.

    Each generator step follows ``critic_iters`` steps of each of the three axis critics; the
    learning rate is constant, as in SliceGAN.

    Returns
    -------
    model : Generator
        In eval mode.
    done : str
        What ran (steps and minutes), for the card.
    """
    import torch

    from battgai.microstructure import io
    from battgai.microstructure.generation import slicegan

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train = io.real_volume("train")
    gen = slicegan.build_generator(slicegan.SliceGANConfig())
    critics = [slicegan.build_critic() for _ in range(3)]
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=(0.9, 0.99))
    opt_d = [torch.optim.Adam(c.parameters(), lr=config.lr, betas=(0.9, 0.99)) for c in critics]
    nz, side = gen.config.nz, 32
    n_real = config.batch * config.slices
    start = time.time()
    step = 0
    for step in range(1, config.steps + 1):
        for _ in range(config.critic_iters):
            with torch.no_grad():
                fake = torch.softmax(gen(torch.randn(config.batch, nz, 4, 4, 4)), dim=1)
            for axis, (critic, opt) in enumerate(zip(critics, opt_d, strict=True)):
                real = _one_hot_slices(train, axis, n_real, side, rng)
                fk = _fake_slices(fake, axis, config.slices, rng)
                alpha = torch.rand(n_real, 1, 1, 1)
                mix = (alpha * real + (1 - alpha) * fk).requires_grad_(True)
                grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
                penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss_d = critic(fk).mean() - critic(real).mean() + config.gp_weight * penalty
                opt.zero_grad(set_to_none=True)
                loss_d.backward()
                opt.step()
        fake = torch.softmax(gen(torch.randn(config.batch, nz, 4, 4, 4)), dim=1)
        loss_g = -sum(critic(_fake_slices(fake, axis, config.slices, rng)).mean()
                      for axis, critic in enumerate(critics))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        minutes = (time.time() - start) / 60
        if step % 20 == 0 or step == 1:
            pore = float((fake.argmax(1) == 0).float().mean())
            log(f"step {step:5d}  critic {loss_d.item():+.3f}  gen {loss_g.item():+.3f}  "
                f"porosity (argmax) {pore:.3f}  {minutes:.1f} min")
        if minutes >= config.max_minutes:
            log(f"stopping at step {step}: time budget of {config.max_minutes} min reached")
            break
    return gen.eval(), f"{step} generator steps ({config.critic_iters} critic steps each) in {minutes:.1f} min"


def save_slicegan(model, done: str, config: SliceGANTrainConfig = SliceGANTrainConfig(), log=print):
    """Measure on the held-out crops and bundle weights + card through the registry."""
    from battgai.core import registry
    from battgai.microstructure import io
    from battgai.microstructure.analysis import metrics
    from battgai.microstructure.generation import generator, slicegan

    test = io.real_volume("test")
    crops = [test[:, y:y + 128, x:x + 128] for y in (0, 128) for x in (0, 128)]
    target = float(np.mean([metrics.volume_fraction(c, 0) for c in crops]))
    gen = [slicegan.sample(model, target, (128, 128, 128), seed=config.seed + i) for i in range(len(crops))]
    m = generator.compare_pore_metrics(crops, gen)
    for phase, name in ((1, "nmc"), (2, "cbd")):
        ssa = [float(np.mean([metrics.specific_surface_area(v, phase) for v in vols])) for vols in (crops, gen)]
        m[f"{name}_ssa_rel_error"] = round(abs(ssa[1] - ssa[0]) / ssa[0], 4)
    log(f"held-out errors: {m}")
    card = registry.ModelCard(
        name=slicegan.MODEL_NAME,
        task="microstructure",
        architecture="SliceGAN-style (Kench & Cooper 2021), scaled down: 3D transposed-conv generator "
                     "(latent 16 x 4^3 -> 4 ConvTranspose3d k4 s2, channels 64/32/16, batch norm + ReLU) -> "
                     "softmax over pore / NMC / CBD; trained as a WGAN-GP against three 2D critics on "
                     "32 x 32 slices along x, y and z.",
        config=dataclasses.asdict(model.config),
        parameters=slicegan.count_parameters(model),
        training_data="TauFactor example NMC electrode (tldr-group/taufactor docs/notebooks/electrode.tiff, "
                      "MIT; Kench et al., JOSS 2023), segmented pore / NMC / CBD, slices z < 128.",
        split="Trained on z < 128 of the 256^3 volume; measured on the four 128^3 crops of z >= 128.",
        metrics=m,
        metrics_command="python -m battgai.bench microstructure",
        retrain_command=RETRAIN.format(name="slicegan"),
        notes=f"Trained on CPU with 1 thread: {done}; batch {config.batch} volumes of 32^3, "
              f"{config.slices} slices per volume and axis per critic, Adam lr {config.lr} betas (0.9, 0.99), "
              f"gradient penalty {config.gp_weight}, seed {config.seed}. The published SliceGAN is larger and "
              "trains for hours on a GPU; this is a minutes-long CPU run. Porosity conditioning is not "
              "learned: one scalar added to the pore log-probability, found by bisection, makes the argmax "
              "volume hit the requested porosity; NMC : CBD is what the generator gives. Metrics compare 4 "
              "generated 128^3 samples at the held-out porosity with the 4 held-out crops (errors of the "
              "means; pore phase unless named).",
    )
    return registry.save(slicegan.MODEL_NAME, dict(model.state_dict()), card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m battgai.train microstructure", description=__doc__)
    parser.add_argument("--model", choices=MODELS, default="denoise")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget (default: 15 for denoise and slicegan, 12 for SR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", metavar="NAME", help="fine-tune from these registry weights (their size is kept)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    parser.add_argument("--raw-fraction", type=float, default=None,
                        help="share of patches from the raw X-ray slice (default: its share of the pixels)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.model == "generator":
        from battgai.microstructure.generation import genfit

        genfit.train_and_save(seed=args.seed)
        return
    if args.model == "slicegan":
        config = dataclasses.replace(SliceGANTrainConfig(), seed=args.seed,
                                     max_minutes=args.max_minutes or SliceGANTrainConfig.max_minutes,
                                     steps=args.steps or SliceGANTrainConfig.steps)
        save_slicegan(*train_slicegan(config))
        return
    from battgai.microstructure import io

    defaults = {"denoise": TrainConfig(model="denoise", steps=1400, max_minutes=15.0),
                "sr_x2": TrainConfig(model="sr_x2", steps=6000, channels=16),
                "sr_x4": TrainConfig(model="sr_x4", steps=2000)}[args.model]
    config = dataclasses.replace(defaults, seed=args.seed, max_minutes=args.max_minutes or defaults.max_minutes,
                                 steps=args.steps or defaults.steps, lr=args.lr or defaults.lr,
                                 raw_fraction=args.raw_fraction)
    init, init_note = None, ""
    if args.init:
        from battgai.core import registry

        init, init_card = registry.load_tensors(args.init)
        if init_card.config["scale"] != config.scale:
            raise SystemExit(f"--init {args.init} has scale {init_card.config['scale']}, --model {args.model} "
                             f"needs {config.scale}")
        config = dataclasses.replace(config, channels=init_card.config["channels"],
                                     n_blocks=init_card.config["n_blocks"])
        init_note = (f", fine-tuned from {args.init} (sha256 {init_card.sha256[:12]}, made by "
                     f"`{init_card.retrain_command}`)")
    # The card's retrain command names every flag that differs from the defaults.
    flags = {"steps": args.steps, "max-minutes": args.max_minutes, "lr": args.lr, "raw-fraction": args.raw_fraction,
             "seed": args.seed or None, "init": args.init}
    retrain = " ".join([RETRAIN.format(name=args.model),
                        *(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}"
                          for k, v in flags.items() if v is not None)])
    images = io.training_images()
    print(f"{args.model}: {len(images)} training images, {sum(im.size for im in images) / 1e6:.1f} Mpx")
    start = time.time()
    model, steps = train_enhancer(config, images, init=init)
    done = f"{steps} of {config.steps} planned steps in {(time.time() - start) / 60:.1f} min"
    card = save_enhancer(model, config, done, retrain=retrain, init_note=init_note)
    print(f"saved {card.name}: {card.size_bytes / 1e3:.0f} kB, sha256 {card.sha256[:12]}")
