"""The reward of reward fine-tuning: what a campaign counts as found, with the suspect guard.

A sampled crystal earns a reward only when it is everything a discovery campaign keeps
(:mod:`battgai.materials.discovery.objective`, judged on static energies):

- it builds and passes the app's checks (atoms 0.5 A apart, no two closer than
  :data:`~battgai.materials.checks.validate.MIN_CONTACT_RATIO` times their radius sum, SMACT
  charge-neutral): the page's sampler rejects the others, so they are worth nothing;
- it matches no known phase on hand (new, StructureMatcher against
  :func:`~battgai.materials.checks.references.known_phases`: rediscovering a held-out MP phase earns nothing);
- it matches no other crystal of its batch, and none rewarded before (an archive of everything
  found, a :class:`~battgai.materials.pipeline.UniqueTracker`, so the policy is paid for new
  crystals, not for repeating one); a repeat of an archived crystal earns
  :attr:`RewardConfig.repeat` instead of 1;
- its static CHGNet E_hull against the MP-20 references is below 0.1 eV/atom and **not**
  suspect (:func:`battgai.materials.checks.evaluate.is_stable`): a crystal more than 0.05 eV/atom
  below the known hull is far likelier a hole of the potential than a discovery (the
  campaign issue measured 14 of 100 relaxed crystals there, SevenNet-0 agreeing on 13 of
  13), so a policy that learnt to find such holes would earn nothing for them;
- in a battery campaign, it holds the working ion and another element, reaches the minimum capacity and
  its static average voltage lies in the window.

References
----------
Cao and Wang, "CrystalFormer-RL: Reinforcement fine-tuning for materials design" (2025);
Shao et al., "DeepSeekMath" (2024), group-relative policy optimisation (GRPO).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from battgai.materials.checks import evaluate, validate
from battgai.materials.checks.battery import candidate_voltages
from battgai.materials.discovery.objective import BatteryTarget
from battgai.materials.pipeline import rejection


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward; the defaults are the ones the bundled fine-tune was trained with."""

    repeat: float = 0.25  # a S.U.N. crystal already in the archive (found in an earlier batch)

    def describe(self) -> str:
        return ("1 for a crystal that passes the app's checks and is new (no match among the known phases), unique "
                "(no match in its batch), in a battery campaign holds the ion with the capacity and voltage asked, "
                "and is stable by static CHGNet (E_hull < 0.1 eV/atom vs the MP-20 references, not "
                f"more than {evaluate.SUSPECT_BELOW_HULL} below: suspect crystals earn 0); {self.repeat:g} when it "
                "repeats a crystal rewarded in an earlier batch; 0 otherwise")


@dataclasses.dataclass
class Judged:
    """Per sampled sequence: the reward and what it was made of (NaN E_hull = no energy)."""

    reward: np.ndarray
    passed: np.ndarray  # built and passed the app's checks
    novel: np.ndarray
    unique: np.ndarray
    e_above_hull: np.ndarray
    new: np.ndarray  # rewarded and not in the archive before

    @property
    def stable(self) -> np.ndarray:
        return np.array([evaluate.is_stable(e) for e in self.e_above_hull], dtype=bool)

    @property
    def suspect(self) -> np.ndarray:
        return np.array([evaluate.is_suspect(e) for e in self.e_above_hull], dtype=bool)

    def summary(self) -> dict[str, float]:
        """Shares over all sequences (the training log and the card report these)."""
        n = len(self.reward)
        return {"reward": float(self.reward.mean()), "passed": float(self.passed.mean()),
                "novel": float((self.novel & self.passed).sum() / n),
                "stable": float(self.stable.sum() / n), "suspect": float(self.suspect.sum() / n),
                "sun": float((self.reward > 0).sum() / n), "new": float(self.new.sum() / n)}


def judge(structures: Sequence, known: Mapping, refs, archive, cfg: RewardConfig = RewardConfig(),
          energies: Callable[[list], list[float]] | None = None, target: BatteryTarget | None = None) -> Judged:
    """Reward each of ``structures`` (None = did not build) and add the rewarded ones to ``archive``.

    ``known`` is the index "new" is judged against (every known phase on hand,
    :func:`battgai.materials.checks.references.known_phases`), ``refs`` the reference phases
    (:func:`battgai.materials.checks.references.reference_phases`), ``archive`` a
    :class:`~battgai.materials.pipeline.UniqueTracker` of the crystals found so far, ``energies``
    the static energies per atom of a list of structures (CHGNet in this process by default; a
    campaign passes its Ray workers'), ``target`` the campaign's battery objective: with a working ion,
    only crystals it counts as found earn a reward (:meth:`BatteryTarget.found`, on static energies).
    """
    if energies is None:
        from battgai.materials.checks.stability import static_energies as energies
    target = target or BatteryTarget()
    n = len(structures)
    passed = np.array([s is not None and rejection(s) is None for s in structures], dtype=bool)
    novel = np.zeros(n, bool)
    novel[passed] = [validate.is_novel(structures[k], known) for k in np.flatnonzero(passed)]
    unique = np.zeros(n, bool)
    unique[passed] = validate.unique_mask([structures[k] for k in np.flatnonzero(passed)])
    fits = passed.copy()
    if target.active:
        fits[passed] = [target.composition_ok(structures[k].composition) for k in np.flatnonzero(passed)]
    # Only crystals that could earn a reward pay for an energy (static CHGNet is most of a step's cost).
    scored = np.flatnonzero(passed & novel & unique & fits)
    ehull, e_atom = np.full(n, math.nan), np.full(n, math.nan)
    if len(scored):
        for k, e in zip(scored, energies([structures[k] for k in scored]), strict=True):
            if np.isfinite(e):
                e_atom[k] = float(e)
                ehull[k] = refs.hull(structures[k].composition, float(e)).e_above_hull
    volts = np.full(n, math.nan)
    stable = [k for k in scored if evaluate.is_stable(ehull[k])]
    if target.active and stable:
        volts[stable] = candidate_voltages([structures[k] for k in stable], e_atom[stable].tolist(), target.ion,
                                           energies)
    reward, new = np.zeros(n), np.zeros(n, bool)
    for k in stable:
        if target.active and not target.voltage_ok(volts[k]):
            continue
        new[k] = archive.add(structures[k])
        reward[k] = 1.0 if new[k] else cfg.repeat
    return Judged(reward, passed, novel, unique, ehull, new)
