"""Train the crystal GPT on the tokenized MP-20 corpus: ``python -m battgai.train materials``.

Runs on one CPU thread for a fixed wall-clock budget (default 18 min), keeps the
weights with the lowest held-out loss and writes them with a model card through
:func:`battgai.core.registry.save`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import TYPE_CHECKING

import numpy as np

from battgai.materials.generation import tokenizer as tk

if TYPE_CHECKING:
    from battgai.materials.training.corpus import Alternatives

DEFAULT_NAME = "materials_gpt"


@dataclasses.dataclass
class TrainConfig:
    minutes: float = 18.0
    max_steps: int = 100_000
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.05
    cond_dropout: float = 0.5  # chance each known property is hidden, so unconditional sampling is learned
    eval_every: int = 250
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    augment: bool = False  # train on random equivalent Wyckoff forms of each crystal
    seed: int = 0
    device: str = "cpu"


def make_batch(tokens: np.ndarray, props_known: np.ndarray, rng: np.random.Generator, cond_dropout: float):
    """Inputs and targets for next-token training; condition tokens are never targets.

    ``props_known`` marks known properties; each is replaced by its "unknown"
    token with probability ``cond_dropout``.
    """
    import torch

    x = tokens.astype(np.int64).copy()
    hide = (rng.random(props_known.shape) < cond_dropout) & props_known
    for j, name in enumerate(tk.PROPERTIES):
        start, size = tk.LAYOUT[name]
        x[hide[:, j], 1 + j] = start + size - 1
    y = np.full_like(x, -1)
    y[:, :-1] = x[:, 1:]
    y[y == tk.PAD] = -1
    y[:, : tk.N_COND] = -1  # position i predicts token i+1: conditions are given, not generated
    return torch.from_numpy(x[:, :-1]), torch.from_numpy(y[:, :-1])


def train(cfg: TrainConfig, train_tokens: np.ndarray, train_props: np.ndarray, heldout_tokens: np.ndarray,
          log=print, alternatives: Alternatives | None = None, init: dict | None = None):
    """Fit a :class:`~battgai.materials.generation.model.GPT`; returns ``(model, best held-out loss, steps)``.

    ``alternatives`` (aligned with ``train_tokens``) replaces each drawn crystal by a random
    equivalent form when ``cfg.augment`` is set; ``init`` is a stored state to start from
    (:meth:`~battgai.materials.generation.model.GPT.stored_state`, as the registry holds it).
    """
    import torch

    from battgai.materials.generation.model import GPT, GPTConfig

    if cfg.augment and alternatives is None:
        raise ValueError("augment needs the crystals' alternatives")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = torch.device(cfg.device)
    model = GPT(GPTConfig(tk.VOCAB_SIZE, tk.SEQ_LEN - 1, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout))
    if init is not None:
        model.load_stored(init)
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    known = np.isfinite(train_props)
    # A fixed 1,000-crystal held-out subset keeps each evaluation to a few seconds on one thread.
    ho = heldout_tokens[:1000]
    hx, hy = (z.to(dev) for z in make_batch(ho, np.zeros((len(ho), tk.N_COND), bool), rng, 0.0))
    budget = cfg.minutes * 60
    t0 = time.time()
    best, best_state, step = math.inf, None, 0

    def evaluate() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(hx), 250):
                x, y = hx[i: i + 250], hy[i: i + 250]
                t = int((y >= 0).any(0).nonzero().max()) + 1
                total += model.loss(x[:, :t], y[:, :t]).item() * (y >= 0).sum().item()
        model.train()
        return total / (hy >= 0).sum().item()

    while step < cfg.max_steps and time.time() - t0 < budget:
        # Cosine decay over the wall-clock budget, since the number of steps is not known in advance.
        frac = max((time.time() - t0) / budget, step / cfg.max_steps)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        lr = cfg.min_lr + (lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(train_tokens), cfg.batch_size)
        batch = alternatives.draw(idx, rng) if cfg.augment else train_tokens[idx]
        x, y = (z.to(dev) for z in make_batch(batch, known[idx], rng, cfg.cond_dropout))
        # Trim trailing padding shared by the whole batch: most crystals have few Wyckoff sites.
        t = int((y >= 0).any(0).nonzero().max()) + 1
        loss = model.loss(x[:, :t], y[:, :t])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            h = evaluate()
            if h < best:
                best, best_state = h, {k: v.clone() for k, v in model.state_dict().items()}
            log(f"step {step} train {loss.item():.3f} heldout {h:.3f} lr {lr:.1e} {time.time() - t0:.0f} s")
    if best_state is None:
        best = evaluate()
    else:
        model.load_state_dict(best_state)
    return model.cpu(), best, step


def _failure_summary(failures: dict[str, int]) -> str:
    grouped: dict[str, int] = {}
    for reason, count in failures.items():
        key = "lattice length outside the token range" if reason.startswith("lattice length") else reason
        grouped[key] = grouped.get(key, 0) + count
    return "; ".join(f"{v} {k}" for k, v in sorted(grouped.items(), key=lambda kv: -kv[1])) or "none"


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai.core import registry
    from battgai.materials.training.corpus import load_alternatives, load_corpus

    p = argparse.ArgumentParser(prog="python -m battgai.train materials", description=__doc__)
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--minutes", type=float, default=TrainConfig.minutes)
    p.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda (the app samples on CPU)")
    p.add_argument("--augment", action="store_true",
                   help="draw a random equivalent Wyckoff form of each crystal (origin shifts, axis permutations); "
                        "the forms are built once (~45 min on one core) and cached under runs/materials/")
    p.add_argument("--init", metavar="NAME", help="start from these registry weights (their size overrides the flags)")
    sizes = ("n_layer", "n_head", "n_embd", "dropout", "weight_decay", "batch_size", "lr", "eval_every")
    for field in sizes:
        default = getattr(TrainConfig, field)
        p.add_argument("--" + field.replace("_", "-"), type=type(default), default=default)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    init = None
    if args.init:
        state, init_card = registry.load_tensors(args.init)
        init = state
        for f in ("n_layer", "n_head", "n_embd"):
            setattr(args, f, init_card.config[f])
    cfg = TrainConfig(minutes=args.minutes, max_steps=args.max_steps, seed=args.seed, device=args.device,
                      augment=args.augment, **{f: getattr(args, f) for f in sizes})
    # The card's retrain command names every setting that differs from the defaults.
    flags = {f: getattr(args, f) for f in (*sizes, "max_steps")}
    changed = [f"--{f.replace('_', '-')} {v:g}" for f, v in flags.items() if v != getattr(TrainConfig, f)]
    if args.device != "cpu":
        changed.append(f"--device {args.device}")
    if args.augment:
        changed.append("--augment")
    if args.init:
        changed.append(f"--init {args.init}")
    retrain = " ".join([f"python -m battgai.train materials --name {args.name} --minutes {args.minutes:g}", *changed])
    where = "1 CPU thread" if args.device == "cpu" else f"{args.device} ({_device_name(args.device)})"
    corpus = load_corpus()
    tr, ho = corpus.subset("train"), corpus.subset("heldout")
    print(f"train {len(tr.ids)} crystals, held-out {len(ho.ids)}, tokenization failures {corpus.n_failed}")
    alternatives = load_alternatives().align(tr.ids) if cfg.augment else None
    if alternatives is not None:
        print(f"{len(alternatives.tokens)} equivalent forms of {len(tr.ids)} crystals")
    model, best, steps = train(cfg, tr.tokens, tr.props, ho.tokens, alternatives=alternatives, init=init)
    n_volt = int(np.isfinite(tr.props[:, list(tk.PROPERTIES).index("voltage")]).sum())
    card = registry.ModelCard(
        name=args.name, task="materials",
        architecture="GPT decoder (nanoGPT-style) over symmetry-aware Wyckoff tokens (CrystalFormer-like)",
        config=dataclasses.asdict(model.config), parameters=model.num_params(),
        training_data=(
            "MP-20 (CDVAE split) from shared data materials/mp_20_cif_only (val + test + 11,249 train rows; "
            "properties joined from mp_20_biternary and mp_20_pilot) plus discharged insertion-electrode "
            f"structures with <= 20 atoms (materials/insertion_electrodes_transformergnn, {n_volt} with voltage). "
            f"{len(tr.ids)} training crystals. Not tokenized: {_failure_summary(corpus.failures)}."),
        split=("by structure: MP-20 test structures whose sha256(material_id) falls in the first third are "
               f"held out ({len(ho.ids)} crystals); everything else trains"),
        metrics={"heldout_nll_per_token": round(best, 4), "train_steps": steps,
                 "train_crystals": len(tr.ids), "heldout_crystals": len(ho.ids)},
        metrics_command=f"{retrain} (heldout_nll_per_token); python -m battgai.bench materials (bench_* metrics: "
                        "N=1000 unconditional, S.U.N. on a subsample with static CHGNet; docs/BENCHMARKS.md)",
        retrain_command=retrain,
        notes=("Tokens: BOS, 4 condition tokens (formation energy, band gap, E_hull, voltage bins; "
               "'unknown' allowed), space group, (Wyckoff letter, element, x, y, z) per site, lattice "
               f"a b c alpha beta gamma of the conventional cell. {tk.COORD_BINS} coordinate bins, "
               f"{tk.LENGTH_BINS} log length bins, 1-degree angle bins. Condition dropout {cfg.cond_dropout}. "
               f"Trained {cfg.minutes:g} min on {where}, batch {cfg.batch_size}, dropout {cfg.dropout:g}, weight decay "
               f"{cfg.weight_decay:g}"
               + (f", from {args.init} (sha256 {init_card.sha256[:12]})" if args.init else "")
               + (", on random equivalent Wyckoff forms of each crystal (--augment)" if cfg.augment else "")
               + ". The "
               "held-out loss also picked the best checkpoint "
               f"(evaluated every {cfg.eval_every} steps), so it is a validation, not a test, number; generation "
               "metrics are in docs/BENCHMARKS.md."),
    )
    card = registry.save(args.name, model.stored_state(), card)
    print(f"saved weights/{args.name}.safetensors ({card.size_bytes / 1e6:.1f} MB), held-out NLL {best:.3f}")
