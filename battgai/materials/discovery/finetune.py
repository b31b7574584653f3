"""Reward fine-tuning of the crystal GPT: group-relative policy gradient with a KL penalty.

``python -m battgai finetune`` (the settings of the bundled ``materials_gpt_rl``) starts from the
bundled model, and repeats: sample a batch with the app's masks (neutrality left to the
reward, as the page's sampler leaves it to rejection), judge it (:mod:`.reward`: stable by
static CHGNet x novel x unique, suspect crystals earn nothing), and take a clipped policy-gradient
step (GRPO: each sequence's advantage is its reward standardised within the batch) with a
per-token KL penalty to the frozen bundled model, which keeps the policy a small step from
what it learnt on MP-20 instead of collapsing onto a few rewarded crystals.

Log-probabilities are those the tokens were drawn from: the model's softmax renormalised over
the sampler's masks (recorded while sampling), for the policy and the reference alike. It runs
on one CPU thread; a step of 64 crystals costs about 8 s, most of it static CHGNet energies.

References
----------
Cao and Wang, "CrystalFormer-RL: Reinforcement fine-tuning for materials design" (2025);
Shao et al., "DeepSeekMath" (2024), GRPO; Schulman et al., "Proximal Policy Optimization" (2017).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from battgai.materials.discovery import reward as rw
from battgai.materials.discovery.guard import DistributionGuard
from battgai.materials.generation.sample import DEFAULT_MODEL, Conditions, LoadedModel, condition_prefix


@dataclasses.dataclass
class FinetuneConfig:
    minutes: float = 40.0
    max_steps: int = 10_000
    batch: int = 64
    lr: float = 5e-5
    # Weight of the per-token KL penalty to the parent: 0.05 drifted further for the same gain, 1.0 gained nothing
    # (docs/BENCHMARKS.md, reward fine-tuning).
    kl: float = 0.2
    clip: float = 0.2  # PPO ratio clip
    epochs: int = 2  # gradient passes over each batch
    seed: int = 0
    reward: rw.RewardConfig = dataclasses.field(default_factory=rw.RewardConfig)


@dataclasses.dataclass
class Rollout:
    """One sampled batch: tokens ``(n, T)``, the masks they were drawn under ``(n, S, vocab)`` for the ``S``
    sampled positions after the prefix, and the built structures (None = dead end / did not build)."""

    tokens: np.ndarray
    masks: np.ndarray
    start: int
    structures: list
    guidance: float = 1.0  # classifier-free guidance the tokens were drawn with (1: none)


def rollout(lm: LoadedModel, n: int, seed: int, conditions: Conditions | None = None,
            guidance: float = 1.0) -> Rollout:
    """``n`` crystals from ``lm`` under ``conditions`` (none by default) with the app's masks and ``guidance``,
    the masks kept."""
    from battgai.materials.generation.sample import sample_tokens
    from battgai.materials.pipeline import build_all

    conditions = conditions or Conditions()
    record: list[np.ndarray] = []
    tokens, ok = sample_tokens(lm, conditions, n, seed=seed, hold_neutral=False, record=record, guidance=guidance)
    structures = [None if b is None else b[0] for b in build_all(tokens, ok)]
    guided = guidance if condition_prefix(conditions) != condition_prefix(Conditions()) else 1.0
    return Rollout(tokens, np.stack(record, axis=1), len(condition_prefix(conditions)), structures, guided)


def token_logprobs(model, ro: Rollout):
    """Log-probability of each sampled token under ``model``, renormalised over its mask: ``(n, S)``.

    With guidance the logits are the sampler's, ``u + g (c - u)`` (``u`` given the unconditional prefix),
    so the policy is scored on the distribution its rounds sample from. Positions whose mask allows one
    token (the padding after the end) contribute 0.
    """
    import torch

    steps = ro.masks.shape[1]
    idx = torch.from_numpy(ro.tokens[:, : ro.start + steps - 1])
    logits, _ = model(idx)
    if ro.guidance != 1.0:
        plain = idx.clone()
        plain[:, : ro.start] = torch.as_tensor(condition_prefix(Conditions()))
        uncond, _ = model(plain)
        logits = uncond + ro.guidance * (logits - uncond)
    logits = logits[:, ro.start - 1:, :].masked_fill(~torch.from_numpy(ro.masks), float("-inf"))
    target = torch.from_numpy(ro.tokens[:, ro.start: ro.start + steps])
    return torch.log_softmax(logits, -1).gather(-1, target[..., None]).squeeze(-1)


def kl_k3(ref_lp, lp, live):
    """Per-sequence mean over live tokens of the k3 estimate of KL(policy || parent), ``exp(d) - d - 1`` with
    ``d = ref - policy`` (Schulman's estimator, as GRPO uses: unbiased and never negative)."""
    d = ref_lp - lp
    return ((d.exp() - d - 1) * live).sum(1) / live.sum(1).clamp(min=1)


def policy_loss(new_lp, old_lp, ref_lp, advantage, live, clip: float, kl: float):
    """Clipped surrogate per token, averaged over each sequence's live tokens, plus ``kl`` times the KL
    estimate, averaged over sequences."""
    import torch

    ratio = torch.exp(new_lp - old_lp)
    adv = advantage[:, None]
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
    per_seq = (surrogate * live).sum(1) / live.sum(1).clamp(min=1)
    return (kl * kl_k3(ref_lp, new_lp, live) - per_seq).mean()


#: ``reward_fn(rollout) -> (reward per sequence, shares to log)``.
RewardFn = Callable[[Rollout], tuple[np.ndarray, dict[str, float]]]


def crystal_reward(known, refs, cfg: rw.RewardConfig, archive=None, energies=None, target=None,
                   guard: DistributionGuard | None = None) -> RewardFn:
    """The campaign's reward (:func:`battgai.materials.discovery.reward.judge`) over one archive of finds
    (a :class:`~battgai.materials.pipeline.UniqueTracker`, new when not given), kept across batches.

    With ``guard`` the reward each sequence learns from is lowered by the guard's penalty
    (:mod:`battgai.materials.discovery.guard`); the logged shares stay those of the unshaped reward.
    """
    from battgai.materials.pipeline import UniqueTracker

    archive = UniqueTracker() if archive is None else archive

    def reward_fn(ro: Rollout) -> tuple[np.ndarray, dict[str, float]]:
        judged = rw.judge(ro.structures, known, refs, archive, cfg, energies, target)
        shares = {**judged.summary(), "archive": len(archive)}
        if guard is None:
            return judged.reward, shares
        return judged.reward - guard.penalty(ro.structures), {**shares, **guard.distances(ro.structures)}

    return reward_fn


def finetune(lm: LoadedModel, cfg: FinetuneConfig, reward_fn: RewardFn, log: Callable[[str], None] = print,
             on_step: Callable[[int, object], None] | None = None, conditions: Conditions | None = None,
             parent=None, guidance: float = 1.0) -> tuple[object, list[dict]]:
    """Fine-tune a copy of ``lm.model`` on ``reward_fn``; returns the model and one log record per step.

    Samples are drawn under ``conditions`` (none by default) with ``guidance``, as a campaign's rounds
    draw them. The KL penalty holds the policy near
    ``parent`` (``lm.model`` by default; a campaign that learns round after round keeps the bundled
    model as the anchor). ``on_step(step, policy)`` is called after each step (to keep checkpoints).
    """
    import torch

    torch.manual_seed(cfg.seed)
    parent = lm.model if parent is None else parent
    policy = copy.deepcopy(lm.model)
    policy.eval()  # no dropout: the ratios compare the same deterministic network before and after a step
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    history, t0 = [], time.time()
    for step in range(cfg.max_steps):
        if time.time() - t0 > cfg.minutes * 60:
            break
        ro = rollout(LoadedModel(policy, lm.name, lm.sha256), cfg.batch, seed=cfg.seed * 1_000_003 + step,
                     conditions=conditions, guidance=guidance)
        r, shares = reward_fn(ro)
        advantage = torch.as_tensor((r - r.mean()) / (r.std() + 1e-6), dtype=torch.float32)
        with torch.no_grad():
            old_lp, ref_lp = token_logprobs(policy, ro), token_logprobs(parent, ro)
        live = torch.from_numpy(ro.masks.sum(-1) > 1).float()
        for _ in range(cfg.epochs if r.std() > 0 else 0):  # an all-equal batch has no signal
            loss = policy_loss(token_logprobs(policy, ro), old_lp, ref_lp, advantage, live, cfg.clip, cfg.kl)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
        rec = {"step": step, "seconds": round(time.time() - t0, 1), "reward": float(r.mean()), **shares,
               "kl": float(kl_k3(ref_lp, old_lp, live).mean())}
        history.append(rec)
        if on_step:
            on_step(step, policy)
        if step % 10 == 0:
            recent = history[-10:]
            mean = {k: np.mean([h[k] for h in recent]) for k in rec if k not in ("step", "seconds")}
            log(f"step {step} {rec['seconds']:.0f} s, mean of the last {len(recent)}: "
                + " ".join(f"{k} {v:.4g}" for k, v in mean.items()))
    return policy, history


def _checkpoint(folder: Path, step: int, policy, every: int = 20) -> None:
    from safetensors.torch import save_file

    if (step + 1) % every == 0:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(policy.stored_state(), str(folder / f"step_{step + 1:04d}.safetensors"))


def _trend(history: list[dict], key: str, k: int = 20) -> tuple[float, float]:
    return float(np.mean([h[key] for h in history[:k]])), float(np.mean([h[key] for h in history[-k:]]))


def guard_trend(history: list[dict], k: int = 20) -> dict[str, float]:
    """The guard's distances over the last ``k`` steps, as medians: one batch with a collapsed cell can make a
    density distance absurd, and a mean would report that batch."""
    recent = history[-k:]
    return {f"train_{key}_median_last_{k}_steps": round(float(np.nanmedian([h[key] for h in recent])), 4)
            for key in ("element_tv", "density_w1")}


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai.core import registry
    from battgai.materials.checks import references
    from battgai.materials.discovery.guard import guard_for
    from battgai.materials.discovery.objective import BatteryTarget
    from battgai.materials.generation.sample import check_conditions, load_model, parse_conditions

    p = argparse.ArgumentParser(prog="python -m battgai finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="materials_gpt_rl")
    p.add_argument("--parent", default=DEFAULT_MODEL)
    defaults = FinetuneConfig()
    for f in ("minutes", "max_steps", "batch", "lr", "kl", "clip", "epochs", "seed"):
        p.add_argument("--" + f.replace("_", "-"), type=type(getattr(defaults, f)), default=getattr(defaults, f))
    p.add_argument("--conditions", default="", help="campaign conditions to sample under, e.g. "
                   "'allowed=Li,Mn,Fe,O,P;required=Li;ion=Li' (parse_conditions keys)")
    p.add_argument("--v-min", type=float, help="voltage window a rewarded crystal must lie in (V vs the ion)")
    p.add_argument("--v-max", type=float)
    p.add_argument("--min-capacity", type=float, default=0.0, help="mAh/g a rewarded crystal must reach")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance of the rollouts "
                   "(campaigns sample with 2)")
    p.add_argument("--guard", type=float, default=0.0, help="weight of the element / density guard "
                   "(battgai.materials.discovery.guard; 0: off)")
    p.add_argument("--repeat", type=float, default=rw.RewardConfig().repeat,
                   help="reward of a find that repeats one made in an earlier batch (0: repeats earn nothing)")
    p.add_argument("--log", type=Path, help="also write the per-step log (JSON) here")
    p.add_argument("--checkpoints", type=Path, metavar="DIR",
                   help="also save the policy every 20 steps here (step_NNNN.safetensors), to compare them")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = FinetuneConfig(**{f: getattr(args, f) for f in ("minutes", "max_steps", "batch", "lr", "kl", "clip",
                                                          "epochs", "seed")},
                         reward=rw.RewardConfig(repeat=args.repeat))
    conditions = parse_conditions(args.conditions)
    target = BatteryTarget(conditions.working_ion, args.v_min, args.v_max, args.min_capacity)
    if conditions.working_ion and conditions.voltage is None and args.v_min is not None and args.v_max is not None:
        conditions = dataclasses.replace(conditions, voltage=(args.v_min + args.v_max) / 2)
    lm = load_model(args.parent)
    known, known_line = references.known_phases()
    refs, refs_line = references.reference_phases("chgnet")
    if known is None or refs is None:
        raise SystemExit(f"reward fine-tuning needs the known phases and E_hull: {known_line}; {refs_line}")
    problems = check_conditions(conditions) + target.problems(conditions.allowed_elements,
                                                              conditions.required_elements, refs)
    if problems:
        raise SystemExit(" ".join(problems))
    guard = guard_for(conditions, args.guard)
    print(f"{known_line}; {refs_line}; {target.describe()}"
          + (f"; guard vs {guard.n_reference} training crystals" if guard else ""), flush=True)
    reward_fn = crystal_reward(known, refs, cfg.reward, target=target, guard=guard)
    model, history = finetune(lm, cfg, reward_fn, log=lambda s: print(s, flush=True), conditions=conditions,
                              guidance=args.guidance,
                              on_step=args.checkpoints and functools.partial(_checkpoint, args.checkpoints))
    if args.log:
        args.log.write_text(json.dumps(history))
    parent = registry.load_card(args.parent)
    changed = [f"--{f.replace('_', '-')} {getattr(args, f):g}" for f in ("max_steps", "batch", "lr", "kl", "clip",
                                                                        "epochs", "seed", "guidance", "guard",
                                                                        "repeat")
               if getattr(args, f) != getattr(defaults, f, {"guidance": 1.0, "guard": 0.0,
                                                            "repeat": rw.RewardConfig().repeat}.get(f))]
    changed += [f"--{f.replace('_', '-')} {getattr(args, f):g}" for f in ("v_min", "v_max", "min_capacity")
                if getattr(args, f)]
    retrain = " ".join([f"python -m battgai finetune --name {args.name} --minutes {args.minutes:g}",
                        *([f"--conditions '{args.conditions}'"] if args.conditions else []), *changed,
                        *([f"--parent {args.parent}"] if args.parent != DEFAULT_MODEL else [])])
    first, last = _trend(history, "sun")
    samples = len(history) * cfg.batch
    guard_metrics = guard_trend(history) if guard else {}
    prompt = (f"prompt {args.conditions!r} with guidance {args.guidance:g}" if args.conditions
              else "unconditional prompt")
    card = registry.ModelCard(
        name=args.name, task="materials", architecture=parent.architecture + ", reward fine-tuned (GRPO + KL)",
        config=parent.config, parameters=parent.parameters,
        training_data=(f"No data beyond the parent's: {samples:,} crystals sampled from the policy itself "
                       f"({len(history)} batches of {cfg.batch}), each rewarded by the app's own checks. Parent "
                       f"{args.parent} (sha256 {lm.sha256[:12]}): {parent.training_data}"),
        split=("the reward judges newness against every known phase on hand (held-out MP-20, MPTS-52 and electrode "
               f"structures included); {known_line}; {refs_line}"),
        metrics={"train_steps": len(history), "train_samples": samples,
                 "train_sun_raw_first_20_steps": round(first, 4), "train_sun_raw_last_20_steps": round(last, 4),
                 "train_kl_last_20_steps": round(_trend(history, "kl")[1], 5),
                 "train_suspect_last_20_steps": round(_trend(history, "suspect")[1], 4),
                 "train_archive": history[-1]["archive"] if history else 0, **guard_metrics},
        metrics_command=(f"{retrain} (train_*: shares of raw samples per step, before rejection); python -m "
                         "battgai.bench campaign --part reward (bench_*: the app's sampler, docs/BENCHMARKS.md)"),
        retrain_command=retrain,
        notes=(f"Parent {args.parent}. Reward: {cfg.reward.describe()}; {target.describe()}. GRPO: advantage = "
               f"reward standardised within each batch of {cfg.batch}, PPO clip {cfg.clip:g}, {cfg.epochs} passes "
               f"per batch, Adam lr {cfg.lr:g}, per-token k3 KL to the parent x {cfg.kl:g}, on the masked (and "
               f"guided) distributions the sampler draws from; {prompt}; "
               + (f"element / density guard x {args.guard:g} against {guard.n_reference} training crystals of "
                  "these elements; " if guard else "no distribution guard; ")
               + f"{cfg.minutes:g} min on 1 CPU thread ({len(history)} steps). Raw samples (before the page's "
               f"rejection) rewarded {first:.1%} in the first 20 steps, {last:.1%} in the last 20."),
        tuned_for={"conditions": args.conditions, "v_min": args.v_min, "v_max": args.v_max,
                   "min_capacity": args.min_capacity, "guidance": args.guidance} if args.conditions else {},
    )
    card = registry.save(args.name, model.stored_state(), card)
    print(f"saved weights/{args.name}.safetensors ({card.size_bytes / 1e6:.1f} MB) after {len(history)} steps")
