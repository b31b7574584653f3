"""Reward fine-tuning: the reward's rules (suspect guard, novelty, uniqueness, archive) and the policy step."""

from __future__ import annotations

import math

import pytest

from battgai.materials.discovery import finetune, reward
from battgai.materials.generation.sample import load_model
from battgai.materials.pipeline import UniqueTracker


def _rocksalt(a: float, cation: str = "Na", anion: str = "Cl"):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


class Hull:
    """Reference phases stand-in: E_hull per reduced formula (NaN when no entry)."""

    def __init__(self, e_hull: dict[str, float]):
        self.e_hull = e_hull

    def hull(self, composition, energy_per_atom: float):
        class H:
            e_above_hull = self.e_hull.get(composition.reduced_formula, math.nan)
            formation_energy = math.nan

        return H()


@pytest.fixture
def no_potential(monkeypatch):
    # The reward's energies come from static CHGNet; the rules under test only need finite numbers.
    from battgai.materials.checks import stability

    monkeypatch.setattr(stability, "static_energies", lambda structures, **kw: [-3.0] * len(structures))


def test_reward_pays_only_stable_novel_unique_crystals(no_potential):
    known = {"NaCl": [_rocksalt(5.64)]}  # NaCl is a training crystal; KCl, LiF and MgO are not
    hull = Hull({"KCl": 0.02, "LiF": -0.30, "MgO": 0.40})
    batch = [_rocksalt(5.64), _rocksalt(6.29, "K"), _rocksalt(6.29, "K"), _rocksalt(4.03, "Li", "F"),
             _rocksalt(4.21, "Mg", "O"), None]
    archive = UniqueTracker()
    judged = reward.judge(batch, known, hull, archive)
    # known NaCl, stable KCl, its duplicate, suspect LiF (0.3 below the hull), unstable MgO, a dead end
    assert judged.reward.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert judged.suspect.tolist() == [False, False, False, True, False, False]
    assert judged.novel.tolist() == [False, True, True, True, True, False]
    assert judged.unique.tolist()[:3] == [True, True, False]
    assert len(archive) == 1
    again = reward.judge([_rocksalt(6.29, "K")], known, hull, archive)  # found before: a repeat earns less
    assert again.reward.tolist() == [reward.RewardConfig().repeat] and not again.new[0]


def test_reward_refuses_crystals_the_page_would_reject(no_potential):
    overlapping = _rocksalt(2.0, "K")  # K and Cl 1.0 A apart
    from pymatgen.core import Lattice, Structure

    # KF2 in the fluorite structure: no assignment of oxidation states makes it neutral
    not_neutral = Structure.from_spacegroup("Fm-3m", Lattice.cubic(6.0), ["K", "F"], [[0, 0, 0], [0.25] * 3])
    judged = reward.judge([overlapping, not_neutral], {}, Hull({"KCl": 0.0, "KF2": 0.0}), UniqueTracker())
    assert judged.passed.tolist() == [False, False] and judged.reward.tolist() == [0.0, 0.0]


def test_masked_logprobs_are_those_the_sampler_drew_from(one_torch_thread):
    lm = load_model()
    ro = finetune.rollout(lm, 6, seed=3)
    import torch

    with torch.no_grad():
        lp = finetune.token_logprobs(lm.model, ro)
    assert lp.shape == ro.masks.shape[:2] and torch.isfinite(lp).all() and (lp <= 0).all()
    single = torch.from_numpy(ro.masks.sum(-1) == 1)
    assert single.any() and (lp[single] == 0).all()  # forced tokens (padding after the end) carry no gradient
    # The first sampled token is the space group: its masked probability, summed over the allowed ones, is 1.
    with torch.no_grad():
        logits, _ = lm.model(torch.from_numpy(ro.tokens[:, : ro.start]))
    p = torch.softmax(logits[:, -1].masked_fill(~torch.from_numpy(ro.masks[:, 0]), float("-inf")), -1)
    assert torch.allclose(p.gather(1, torch.from_numpy(ro.tokens[:, ro.start:ro.start + 1])).log().squeeze(1),
                          lp[:, 0], atol=1e-5)


def test_guided_logprobs_are_the_guided_distribution_rounds_sample_from(one_torch_thread):
    import torch

    from battgai.materials.generation.sample import Conditions, condition_prefix

    lm = load_model()
    c = Conditions(allowed_elements=("Li", "Mn", "O"), required_elements=("Li",), working_ion="Li", voltage=3.75)
    ro = finetune.rollout(lm, 4, seed=5, conditions=c, guidance=2.0)
    assert ro.guidance == 2.0
    with torch.no_grad():
        lp = finetune.token_logprobs(lm.model, ro)
        cond, _ = lm.model(torch.from_numpy(ro.tokens[:, : ro.start]))
        plain, _ = lm.model(torch.tensor([condition_prefix(Conditions())] * 4))
    guided = plain[:, -1] + 2.0 * (cond[:, -1] - plain[:, -1])  # u + g (c - u), as the sampler draws
    p = torch.softmax(guided.masked_fill(~torch.from_numpy(ro.masks[:, 0]), float("-inf")), -1)
    first = torch.from_numpy(ro.tokens[:, ro.start:ro.start + 1])
    assert torch.allclose(p.gather(1, first).log().squeeze(1), lp[:, 0], atol=1e-4)
    # Without property targets there is nothing to guide: the plain distribution, as the sampler does.
    assert finetune.rollout(lm, 2, seed=5, conditions=Conditions(), guidance=2.0).guidance == 1.0


def test_a_battery_reward_pays_only_crystals_with_the_ion_in_the_window(no_potential, monkeypatch):
    from battgai.materials.discovery import objective

    # Voltages from a table: LiF 3.5 V (inside 3-4.5), LiCl 2.0 V (outside); KCl holds no Li.
    monkeypatch.setattr(reward, "candidate_voltages", lambda structures, e, ion, energies: [
        {"LiF": 3.5, "LiCl": 2.0}.get(s.composition.reduced_formula, math.nan) for s in structures])
    hull = Hull({"LiF": 0.02, "LiCl": 0.01, "KCl": 0.0})
    target = objective.BatteryTarget("Li", 3.0, 4.5, 120.0)
    batch = [_rocksalt(4.03, "Li", "F"), _rocksalt(5.13, "Li", "Cl"), _rocksalt(6.29, "K")]
    judged = reward.judge(batch, {}, hull, UniqueTracker(), target=target)
    assert judged.reward.tolist() == [1.0, 0.0, 0.0]
    assert math.isnan(judged.e_above_hull[2])  # no Li: not worth an energy


def test_policy_steps_move_towards_the_reward_and_stay_near_the_parent(one_torch_thread):
    # A reward that pays for cubic space groups (195-230); a few steps must raise their share and keep the
    # parent's weights untouched.
    from battgai.materials.generation import tokenizer as tk

    lm = load_model()
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}

    def cubic(ro):
        sg = ro.tokens[:, ro.start] - tk.LAYOUT["sg"][0] + 1
        r = ((sg >= 195) & (sg <= 230)).astype(float)
        return r, {"cubic": float(r.mean())}

    cfg = finetune.FinetuneConfig(max_steps=6, batch=24, lr=3e-3, kl=0.0, seed=1)
    policy, history = finetune.finetune(lm, cfg, cubic, log=lambda s: None)
    assert len(history) == 6 and all(h["kl"] >= 0 for h in history)
    import torch

    with torch.no_grad():
        logits, _ = lm.model(torch.tensor([finetune.condition_prefix(finetune.Conditions())]))
        logits_new, _ = policy(torch.tensor([finetune.condition_prefix(finetune.Conditions())]))
    cubic_ids = [tk.LAYOUT["sg"][0] + sg - 1 for sg in range(195, 231)]
    share = torch.softmax(logits[0, -1], -1)[cubic_ids].sum()
    share_new = torch.softmax(logits_new[0, -1], -1)[cubic_ids].sum()
    assert share_new > share + 0.05
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())


def test_reward_table_marks_each_target():
    from battgai.bench.materials.campaign import REWARD_ROWS, reward_markdown

    base = {key: 0.5 for key, *_ in REWARD_ROWS} | {"relax_n": 100, "wdist_density": 0.2, "wdist_num_elems": 0.1,
                                                     "density_mean": 4.0}
    tuned = base | {"novel": 0.9, "cov_r": 0.94, "wdist_density": 0.35, "sun_static": 0.8, "sun_relaxed": 0.6}
    r = {"command": "python -m battgai.bench campaign --part reward", "date": "2026-12-03", "version": "x",
         "n": 1000, "seed": 0, "relax_steps": 100, "relax_n": 100, "ref": 2995, "ref_density_mean": 4.1,
         "models": {"materials_gpt": base, "materials_gpt_rl": tuned}}
    rows = {line.split(" | ")[0].lstrip("| "): line for line in reward_markdown(r).splitlines() if line.startswith("|")}
    new = rows["new (vs every known phase)"]
    assert "90.0 %" in new and ">= 85 %: **met**" in new
    assert ">= 1.5x: **met**" in rows["S.U.N. static, fine-tuned / parent"]  # 0.8 / 0.5
    assert ">= 1.5x: **missed**" in rows["S.U.N. relaxed, fine-tuned / parent"]  # 0.6 / 0.5
    assert "**missed**" in rows["COV-R"] and "<= 0.3: **missed**" in rows["Wasserstein, density"]
    assert rows["suspect, static"].endswith("| – |")
