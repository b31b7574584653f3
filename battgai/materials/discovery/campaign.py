"""Discovery campaigns: rounds of sample -> check -> static screen -> relax the best -> judge -> store.

One code path for ``python -m battgai campaign`` and the Campaigns page (which runs that command in a
detached process). Each round samples ``per_round`` crystals with the app's sampler and conditions
(:func:`~battgai.materials.pipeline.generate`: rejection of invalid, overlapping and non-neutral
crystals, novelty and uniqueness as generated), ranks the valid, unique and not-known ones by static
CHGNet E_hull, relaxes the best ``relax`` of them (FIRE on a FrechetCellFilter, as the bench does)
and judges each relaxed crystal again: E_hull against the MP-20 references, novelty and uniqueness
(against every earlier round) on the relaxed structure, and the suspect guard of
:mod:`battgai.materials.checks.evaluate`. Energies and relaxations run on Ray (:mod:`.engine`).

The folder (:class:`CampaignFolder`)
------------------------------------
``campaign.json`` (format, settings, model name and sha256, battgai version), one
``rounds/round_NNNN.json`` per finished round (every candidate's record and structures), written
atomically: a round is committed when its file appears, never half. ``cifs/<id>.cif`` and
``candidates.csv`` are derived copies for people, rewritten from the round files. Round ``r`` always
uses the same seed, so a driver killed at any moment (even ``kill -9``) resumes at the first round
without a file and ends with the same candidates, none lost and none counted twice.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from battgai.core.runs import write_atomic
from battgai.materials.checks import battery, evaluate, validate
from battgai.materials.discovery.objective import BatteryTarget
from battgai.materials.generation.sample import DEFAULT_MODEL

#: Version of the folder layout and of the round rules; a folder of another version is refused, never mixed
#: into (2: crystals suspect at the static screen are no longer relaxed; 3: "new" against every known phase,
#: the battery objective, suspect crystals counted at the screen too).
FORMAT = 3
TASK = "materials.campaign"
#: Free disk space a campaign needs before it starts (a round of 100 crystals takes ~1 MB; headroom for logs).
MIN_FREE_BYTES = 50 * 2**20
#: Most crystals per round and relaxations per round a campaign accepts (a round should take minutes).
MAX_PER_ROUND = 2000
#: Most crystals a campaign's DFT audit takes (a 4-atom cell and its references take minutes each).
MAX_DFT_AUDIT = 20
#: ``progress(rounds done, rounds asked, what the driver is doing)``.
Progress = Callable[[int, int, str], None]


class CampaignError(ValueError):
    """A campaign that cannot start (the message says why); nothing stored was changed."""


@dataclasses.dataclass(frozen=True)
class CampaignSettings:
    """What a campaign is asked for; together with the model's sha256 it fixes every round's result."""

    conditions: str = ""
    rounds: int = 3
    per_round: int = 50
    relax: int = 10
    seed: int = 0
    model: str = DEFAULT_MODEL
    relax_steps: int = 100
    fmax: float = 0.1
    guidance: float = 2.0
    novel_only: bool = False
    learn_steps: int = 0  # policy-gradient steps between rounds (0: every round samples the bundled model)
    learn_batch: int = 32
    dft_audit: int = 0  # after the rounds, the best this many found crystals are checked with DFT (0: none)
    dft_preset: str = "screen"
    v_min: float | None = None  # voltage window (V vs the working ion's metal) a found crystal must lie in
    v_max: float | None = None
    min_capacity: float = 0.0  # mAh/g a found crystal must reach
    max_cpu_hours: float = 0.0  # stop once the campaign has used this much CPU time (0: no budget)
    stop_found: int = 0  # stop once this many crystals are found (0: run every round)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def problems(self) -> list[str]:
        """Reasons no campaign can run with these settings (empty when it can), conditions included."""
        from battgai.materials.generation.sample import check_conditions, parse_conditions

        out = []
        if not 1 <= self.per_round <= MAX_PER_ROUND:
            out.append(f"Crystals per round must be 1..{MAX_PER_ROUND}, got {self.per_round}.")
        if not 0 <= self.relax <= self.per_round:
            out.append(f"Relaxations per round must be 0..{self.per_round} (the crystals per round), got {self.relax}.")
        if self.rounds < 1:
            out.append(f"A campaign needs at least one round, got {self.rounds}.")
        if self.learn_steps < 0 or self.learn_batch < 2:
            out.append("Learning steps must be 0 or more, with at least 2 crystals per step.")
        if self.relax_steps < 1 or not self.fmax > 0:
            out.append("Relaxation steps must be at least 1 and fmax above 0.")
        if not 0 <= self.dft_audit <= MAX_DFT_AUDIT:
            out.append(f"The DFT audit takes 0..{MAX_DFT_AUDIT} crystals (each costs minutes), got {self.dft_audit}.")
        if self.dft_preset not in ("screen", "accurate"):
            out.append(f"The DFT preset must be screen or accurate, got {self.dft_preset!r}.")
        if self.max_cpu_hours < 0 or self.stop_found < 0:
            out.append("The CPU-time budget and the number found to stop at must be 0 (none) or more.")
        try:
            conditions = parse_conditions(self.conditions)
        except ValueError as exc:
            return [*out, f"Conditions {self.conditions!r} do not parse: {exc}"]
        out += check_conditions(conditions)
        out += self.target().problems(conditions.allowed_elements, conditions.required_elements)
        return out

    def target(self) -> BatteryTarget:
        """What counts as found (:mod:`battgai.materials.discovery.objective`)."""
        from battgai.materials.generation.sample import parse_conditions

        try:
            ion = parse_conditions(self.conditions).working_ion
        except ValueError:
            ion = None
        return BatteryTarget(ion, self.v_min, self.v_max, self.min_capacity)

    def sampling_conditions(self):
        """The conditions rounds sample under: the typed ones, with the window's middle as the voltage target
        when a window is set and no voltage target is (the model is conditioned on voltage bins)."""
        from battgai.materials.generation.sample import parse_conditions

        c = parse_conditions(self.conditions)
        if c.working_ion and c.voltage is None and self.v_min is not None and self.v_max is not None:
            c = dataclasses.replace(c, voltage=(self.v_min + self.v_max) / 2)
        return c


def stored_settings(meta: Mapping[str, Any]) -> CampaignSettings:
    """The settings a campaign folder was started with (settings added since take their defaults)."""
    return CampaignSettings(**{**CampaignSettings().as_dict(), **meta["settings"]})


#: Settings a resumed campaign may change: they say when to stop, never what a round does.
EXTENDABLE = ("rounds", "max_cpu_hours", "stop_found")


def round_seed(seed: int, r: int) -> int:
    """The sampler's seed of round ``r``: fixed, so a resumed round draws the crystals it would have drawn."""
    return seed * 10_007 + r * 7_919_003


def candidate_id(r: int, k: int) -> str:
    return f"r{r:03d}-{k:04d}"


class CampaignFolder:
    """The files of one campaign (see the module docstring); every write is atomic."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def meta_path(self) -> Path:
        return self.root / "campaign.json"

    @property
    def rounds_dir(self) -> Path:
        return self.root / "rounds"

    def model_path(self, r: int) -> Path:
        """Weights round ``r`` samples with when the campaign learns between rounds."""
        return self.root / "models" / f"round_{r:04d}.safetensors"

    def meta(self) -> dict[str, Any] | None:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else None

    def problems(self, settings: CampaignSettings, model_sha256: str | None = None) -> list[str]:
        """Why this folder cannot hold ``settings`` (another format, other settings, too little disk)."""
        out = []
        meta = self.meta()
        if meta is not None:
            if meta.get("format") != FORMAT:
                out.append(f"{self.root} holds a campaign of folder format {meta.get('format')} (battgai "
                           f"{meta.get('battgai_version')}); this version writes format {FORMAT}. Start a new "
                           "campaign folder; the old one is left as it is.")
            else:
                # Settings added since a folder was written take their defaults (what that folder ran with).
                stored = {**CampaignSettings().as_dict(), **meta["settings"]}
                old = {k: v for k, v in stored.items() if k not in EXTENDABLE}
                new = {k: v for k, v in settings.as_dict().items() if k not in EXTENDABLE}
                if old != new:
                    changed = sorted(k for k in new if old.get(k) != new[k])
                    out.append(f"{self.root} holds a campaign with other settings ({', '.join(changed)}); only "
                               "the rounds and the stop rule may change. Use a new folder.")
                elif model_sha256 and meta.get("model_sha256") != model_sha256:
                    out.append(f"{self.root} was sampled with another version of model {settings.model} "
                               f"(sha256 {meta.get('model_sha256', '')[:12]}); use a new folder.")
        probe = self.root if self.root.exists() else next(p for p in self.root.parents if p.exists())
        free = shutil.disk_usage(probe).free
        if free < MIN_FREE_BYTES:
            out.append(f"Only {free / 2**20:.0f} MB free on the disk of {self.root}; a campaign needs at least "
                       f"{MIN_FREE_BYTES / 2**20:.0f} MB. Free some space first.")
        if not os.access(probe, os.W_OK):
            out.append(f"{probe} is not writable.")
        return out

    def create(self, settings: CampaignSettings, model_sha256: str, notes: Mapping[str, str]) -> None:
        from battgai import __version__

        self.rounds_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "cifs").mkdir(exist_ok=True)
        meta = self.meta()
        if meta is None:
            meta = {"format": FORMAT, "settings": settings.as_dict(), "model": settings.model,
                    "model_sha256": model_sha256, "battgai_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "notes": dict(notes)}
        # More rounds, CPU time or finds may be asked of a campaign later.
        meta["settings"].update({k: getattr(settings, k) for k in EXTENDABLE})
        write_atomic(self.meta_path, json.dumps(meta, indent=2).encode())

    def committed(self) -> list[int]:
        """Rounds whose file is on disk, in order."""
        if not self.rounds_dir.exists():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.rounds_dir.glob("round_*.json"))

    def read_round(self, r: int) -> dict[str, Any]:
        return json.loads((self.rounds_dir / f"round_{r:04d}.json").read_text())

    def rounds(self) -> list[dict[str, Any]]:
        return [self.read_round(r) for r in self.committed()]

    def commit(self, record: dict[str, Any]) -> None:
        """Write a finished round: CIFs first, then the round file (the commit), then the CSV of all rounds."""
        from pymatgen.core import Structure

        for c in record["candidates"]:
            s = Structure.from_dict(c["structure"])
            write_atomic(self.root / "cifs" / f"{c['id']}.cif", s.to(fmt="cif").encode())
        write_atomic(self.rounds_dir / f"round_{record['round']:04d}.json", json.dumps(record).encode())
        write_atomic(self.root / "candidates.csv", self.csv().encode())

    def rows(self) -> list[dict[str, Any]]:
        """Every committed candidate's record without its structures, in round order."""
        return [{k: v for k, v in c.items() if k not in STRUCTURE_KEYS} for rd in self.rounds()
                for c in rd["candidates"]]

    def csv(self) -> str:
        rows = self.rows()
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return buf.getvalue()

    def cif_zip(self) -> bytes:
        """Every candidate's CIF (relaxed where it was relaxed) plus ``candidates.csv``, as one zip."""
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rd in self.rounds():
                for c in rd["candidates"]:
                    path = self.root / "cifs" / f"{c['id']}.cif"
                    if path.exists():
                        zf.write(path, f"cifs/{c['id']}.cif")
            zf.writestr("candidates.csv", self.csv())
            if self.meta_path.exists():
                zf.write(self.meta_path, "campaign.json")
        return buf.getvalue()

    def dft_audit(self) -> dict[str, Any] | None:
        """The DFT audit of the best found crystals, when one ran (:func:`dft_audit`)."""
        path = self.root / "dft_audit.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_status(self, **status: Any) -> None:
        """What the driver is doing now, for the page (not part of the results; lost writes do no harm)."""
        with contextlib.suppress(OSError):
            write_atomic(self.root / "status.json", json.dumps({**status, "time": time.time()}).encode())

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "status.json").read_text())
        except (OSError, ValueError):
            return {}


#: Keys of a candidate record that hold structures (pymatgen dicts), kept out of the CSV.
STRUCTURE_KEYS = ("structure", "generated")


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """One round in numbers: relaxed, stable, suspect (screen included), S.U.N. and found, crystals per minute."""
    cands = record["candidates"]
    relaxed = [c for c in cands if c["relaxed"]]
    return {"round": record["round"], "sampled": len(cands), "relaxed": len(relaxed),
            "stable": sum(c["stable"] for c in relaxed), "suspect": sum(c["suspect"] for c in cands),
            "sun": sum(c["sun"] for c in relaxed), "found": sum(c["found"] for c in cands),
            "sun_rate": evaluate.rate(c["sun"] for c in relaxed),
            "new_rate": evaluate.rate(c["new"] for c in relaxed),
            "candidates_per_minute": 60 * len(cands) / max(record["seconds"], 1e-9),
            "seconds": record["seconds"], "cpu_seconds": record.get("cpu_seconds", math.nan),
            "model_sha256": cands[0]["model_sha256"][:12] if cands else "",
            "learning_steps": record.get("learned", {}).get("steps", 0)}


class Judge:
    """References, training structures and the crystals seen so far: everything a round is judged against."""

    def __init__(self, refs, known: Mapping | None):
        self.refs = refs
        self.known = known
        from battgai.materials.pipeline import UniqueTracker

        self.generated = UniqueTracker()  # as sampled, across rounds: the screen skips repeats
        self.relaxed = UniqueTracker()  # as relaxed, across rounds: what uniqueness of a result means

    def remember(self, record: Mapping[str, Any]) -> None:
        """Add a committed round's crystals, exactly as a run that never stopped would have seen them."""
        from pymatgen.core import Structure

        for c in record["candidates"]:
            if c["unique_generated"]:
                self.generated.add(Structure.from_dict(c["generated"]))
            if c["relaxed"] and c["unique"]:
                self.relaxed.add(Structure.from_dict(c["structure"]))

    def hull(self, structure, energy: float) -> tuple[float, float]:
        if not np.isfinite(energy):
            return math.nan, math.nan
        h = self.refs.hull(structure.composition, energy)
        return h.e_above_hull, h.formation_energy


#: How far outside the voltage window a crystal's static voltage may lie and still be relaxed: relaxing the
#: lithiated crystal moves the proxy, and 0.3 V is about the static proxy's error against DFT (MAE 0.20 V,
#: docs/BENCHMARKS.md), so crystals near the window are not thrown away before their relaxed voltage is known.
VOLTAGE_SCREEN_MARGIN = 0.3


def run_round(r: int, settings: CampaignSettings, lm, conditions, judge: Judge, engine,
              say: Callable[[str], None] = lambda text: None, learned: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """Sample, screen, relax and judge round ``r``; returns its record (not yet committed).

    ``say(text)`` hears what the round is doing. Each crystal is added to ``judge`` as it is judged, so
    uniqueness holds across rounds. ``learned`` says how ``lm`` was fine-tuned from the bundled model (kept
    in the record).
    """
    from battgai.materials.pipeline import generate

    t0, seed, target = time.time(), round_seed(settings.seed, r), settings.target()
    say(f"round {r + 1}: sampling {settings.per_round}")
    cands, tally = generate(lm, conditions, settings.per_round, seed=seed, batch_size=settings.per_round,
                            known=judge.known, guidance=settings.guidance, novel_only=settings.novel_only)
    for c in cands:
        c.unique = judge.generated.add(c.structure)
    valid = [k for k, c in enumerate(cands) if c.valid_structure]
    say(f"round {r + 1}: static energies of {len(valid)}")
    energies = engine.static_energies([cands[k].structure for k in valid],
                                      progress=lambda d, n: say(f"round {r + 1}: static energies {d}/{n}"))
    static = {k: (*judge.hull(cands[k].structure, e), e) for k, e in zip(valid, energies, strict=True)}
    # Worth relaxing: valid, not a repeat of this campaign, not a known phase, not suspect already (relaxing only
    # lowers the energy, so a crystal suspect before relaxing stays suspect), and in a battery campaign the ion,
    # the capacity and a static voltage near the window; lowest static E_hull first.
    eligible = [k for k in valid if cands[k].unique and cands[k].novel is not False and np.isfinite(static[k][0])
                and not evaluate.is_suspect(static[k][0])
                and (not target.active or target.composition_ok(cands[k].structure.composition))]
    static_v = {}
    if target.active and (target.v_min is not None or target.v_max is not None):
        say(f"round {r + 1}: static voltages of {len(eligible)}")
        static_v = dict(zip(eligible, battery.candidate_voltages([cands[k].structure for k in eligible],
                                                                 [static[k][2] for k in eligible], target.ion,
                                                                 engine.static_energies), strict=True))
        eligible = [k for k in eligible if target.voltage_ok(static_v[k], VOLTAGE_SCREEN_MARGIN)]
    chosen = sorted(eligible, key=lambda k: static[k][0])[:settings.relax]
    say(f"round {r + 1}: relaxing {len(chosen)}")
    relaxed = dict(zip(chosen, engine.relax([cands[k].structure for k in chosen], settings.relax_steps,
                                            settings.fmax,
                                            progress=lambda d, n: say(f"round {r + 1}: relaxed {d}/{n}")),
                       strict=True))
    done = {k: v for k, v in relaxed.items() if v[0] is not None and validate.structural_valid(v[0])}
    volts = {}
    if target.active and done:
        say(f"round {r + 1}: voltages of {len(done)}")
        volts = dict(zip(done, battery.candidate_voltages([done[k][0] for k in done], [done[k][1] for k in done],
                                                          target.ion, engine.static_energies), strict=True))
    out = []
    for k, c in enumerate(cands):
        e_hull_s, _, e_s = static.get(k, (math.nan, math.nan, math.nan))
        suspect_static = evaluate.is_suspect(e_hull_s)
        rec = {"id": candidate_id(r, k), "round": r, "index": k, "seed": seed, "model": lm.name,
               "model_sha256": lm.sha256, "formula": c.formula, "n_atoms": len(c.structure),
               "sg_found": c.spacegroup_found, "valid": c.valid_structure, "smact": c.valid_smact,
               "elements_ok": c.obeys_elements, "unique_generated": c.unique, "new_generated": c.novel,
               "known_match": c.known_match, "e_static": e_s, "e_hull_static": e_hull_s,
               "voltage_static": static_v.get(k, math.nan), "relaxed": False, "relax_note": "",
               "e_relaxed": math.nan, "e_hull": math.nan, "formation_energy": math.nan, "new": None,
               "unique": None, "stable": False, "suspect": suspect_static, "sun": False, "found": False,
               "voltage": math.nan,
               "capacity": battery.capacity_grav(c.structure.composition, target.ion) if target.active else math.nan,
               "verdict": "suspect at the screen" if suspect_static else "not relaxed",
               "potential": "chgnet", "generated": c.structure.as_dict(), "structure": c.structure.as_dict()}
        if k in relaxed and k not in done:
            rec["relax_note"] = relaxed[k][2] or "relaxed into an invalid structure (atoms closer than 0.5 A)"
        elif k in done:
            final, energy, _ = done[k]
            e_hull, e_form = judge.hull(final, energy)
            match = None if judge.known is None else validate.known_match(final, judge.known)
            unique = judge.relaxed.add(final)
            rec.update(relaxed=True, e_relaxed=energy, e_hull=e_hull, formation_energy=e_form,
                       new=(match is None) if judge.known is not None else None, known_match=match or "",
                       unique=unique, stable=evaluate.is_stable(e_hull), suspect=evaluate.is_suspect(e_hull),
                       verdict=evaluate.verdict(e_hull), structure=final.as_dict(),
                       sg_found=validate.spacegroup_found(final), voltage=volts.get(k, math.nan))
            rec["sun"] = bool(rec["stable"] and unique and rec["new"])
            rec["found"] = target.found(rec)
        out.append(rec)
    return {"round": r, "seed": seed, "seconds": time.time() - t0, "finished": time.time(),
            "tally": dataclasses.asdict(tally), "learned": dict(learned or {}), "candidates": out}


def learn_seed(seed: int, r: int) -> int:
    """Seed of the learning steps before round ``r`` (fixed, so a resumed campaign learns the same)."""
    return round_seed(seed, r) + 104_729


def model_for_round(r: int, settings: CampaignSettings, parent, conditions, judge: Judge, engine,
                    folder: CampaignFolder, say: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The generator round ``r`` samples with, and how it was made.

    Without learning (or for round 0) the bundled model. Otherwise the model of round ``r - 1``
    after ``settings.learn_steps`` reward fine-tuning steps (:mod:`battgai.materials.discovery.finetune`)
    under the campaign's conditions and guidance, rewarded by its own rule of what is found, with the KL
    anchor on the bundled model and the distribution guard (:mod:`battgai.materials.discovery.guard`);
    crystals the campaign already holds earn only the repeat weight. The weights are stored in ``models/`` before the
    round starts, so a resumed campaign samples round ``r`` with the same model.
    """
    import hashlib

    import safetensors.torch

    from battgai.materials.discovery import finetune
    from battgai.materials.discovery.guard import guard_for
    from battgai.materials.generation.sample import LoadedModel

    if not settings.learn_steps or r == 0:
        return parent, {}
    path = folder.model_path(r)
    if path.exists():
        data = path.read_bytes()  # read once: the weights and the sha256 the candidates record
        model = copy.deepcopy(parent.model)
        model.load_stored(safetensors.torch.load(data))
        return LoadedModel(model, f"{parent.name}+learned", hashlib.sha256(data).hexdigest()), _learn_note(folder, r)
    before, _ = model_for_round(r - 1, settings, parent, conditions, judge, engine, folder, say)
    cfg = finetune.FinetuneConfig(max_steps=settings.learn_steps, batch=settings.learn_batch, minutes=1e9,
                                  seed=learn_seed(settings.seed, r))
    reward_fn = finetune.crystal_reward(judge.known, judge.refs, cfg.reward, archive=copy.deepcopy(judge.generated),
                                        energies=engine.static_energies, target=settings.target(),
                                        guard=guard_for(conditions))
    model, history = finetune.finetune(before, cfg, reward_fn, conditions=conditions, parent=parent.model,
                                       guidance=settings.guidance,
                                       log=lambda text: say(f"learning before round {r + 1}: {text}"))
    path.parent.mkdir(exist_ok=True)
    data = safetensors.torch.save(model.stored_state())
    write_atomic(path, data)
    note = {"steps": len(history), "batch": cfg.batch, "from": parent.sha256,
            "reward_mean": float(np.mean([h["reward"] for h in history])) if history else math.nan,
            "kl_last": history[-1]["kl"] if history else 0.0}
    write_atomic(path.with_suffix(".json"), json.dumps(note).encode())
    return LoadedModel(model, f"{parent.name}+learned", hashlib.sha256(data).hexdigest()), note


def _learn_note(folder: CampaignFolder, r: int) -> dict[str, Any]:
    note = folder.model_path(r).with_suffix(".json")
    return json.loads(note.read_text()) if note.exists() else {}


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` loaded and checked."""

    lm: Any  # battgai.materials.generation.sample.LoadedModel
    conditions: Any  # battgai.materials.generation.sample.Conditions
    judge: Judge
    notes: dict[str, str]


def prepare(settings: CampaignSettings, folder: CampaignFolder) -> Prepared:
    """Load the model, references and training structures, checking everything before any work starts.

    Raises :class:`CampaignError` with every reason the campaign cannot run, before the folder is touched.
    """
    from battgai.materials.checks.references import known_phases, reference_phases
    from battgai.materials.generation.sample import load_model

    problems = settings.problems()
    if problems:
        raise CampaignError(" ".join(problems))
    lm = load_model(settings.model)
    problems = folder.problems(settings, lm.sha256)
    refs, refs_note = reference_phases()
    known, known_note = known_phases()
    conditions, target = settings.sampling_conditions(), settings.target()
    if refs is None:
        problems.append(f"A campaign judges stability by E_hull: {refs_note}")
    else:
        problems += target.problems(conditions.allowed_elements, conditions.required_elements, refs)
    if known is None:
        problems.append(f"A campaign judges what is new against the known phases: {known_note}")
    if problems:
        raise CampaignError(" ".join(problems))
    return Prepared(lm, conditions, Judge(refs, known),
                    {"references": refs_note, "novelty": known_note, "found": target.describe()})


def run_campaign(settings: CampaignSettings, root: str | os.PathLike, engine, progress: Progress | None = None,
                 prepared: Prepared | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the campaign in ``root`` on ``engine``; returns every round's :func:`summary`.

    ``prepared`` is :func:`prepare`'s result for this folder when the caller checked it already.
    """
    folder = CampaignFolder(root)
    p = prepared or prepare(settings, folder)
    folder.create(settings, p.lm.sha256, p.notes)
    done = folder.committed()
    for r in done:
        p.judge.remember(folder.read_round(r))
    for r in range(settings.rounds):
        if r in done:
            continue
        if why := stop_reason(settings, folder.rounds()):
            folder.write_status(round=r, rounds=settings.rounds, step=f"stopped: {why}", pid=os.getpid(),
                                stopped=why)
            break

        def say(text: str, r: int = r) -> None:
            folder.write_status(round=r, rounds=settings.rounds, step=text, pid=os.getpid())
            if progress:
                progress(len(folder.committed()), settings.rounds, text)

        cpu0 = cpu_seconds(engine)
        lm, learned = model_for_round(r, settings, p.lm, p.conditions, p.judge, engine, folder, say)
        # run_round adds the round's crystals to the judge as it goes; the commit makes them count.
        record = run_round(r, settings, lm, p.conditions, p.judge, engine, say, learned)
        record["cpu_seconds"] = max(0.0, cpu_seconds(engine) - cpu0)  # a restarted worker starts from 0
        folder.commit(record)
    if settings.dft_audit:
        def tell(text: str) -> None:
            folder.write_status(round=settings.rounds, rounds=settings.rounds, step=text, pid=os.getpid())
            if progress:
                progress(settings.rounds, settings.rounds, text)

        dft_audit(folder, settings, engine, tell)
    why = stop_reason(settings, folder.rounds())
    folder.write_status(round=settings.rounds, rounds=settings.rounds, pid=os.getpid(), stopped=why,
                        step=f"finished: {why}" if why else "finished")
    if progress:
        progress(settings.rounds, settings.rounds, "finished")
    return [summary(rd) for rd in folder.rounds()]


def cpu_seconds(engine) -> float:
    """CPU time this process and the engine's workers have used so far (s): what a CPU-time budget counts."""
    return time.process_time() + (engine.cpu_seconds() if hasattr(engine, "cpu_seconds") else 0.0)


def stop_reason(settings: CampaignSettings, rounds: list[Mapping[str, Any]]) -> str:
    """Why a campaign with these committed ``rounds`` stops before its round count ("" when it goes on)."""
    found = sum(c["found"] for rd in rounds for c in rd["candidates"])
    cpu = sum(rd.get("cpu_seconds", 0.0) for rd in rounds)
    if settings.stop_found and found >= settings.stop_found:
        return f"{found} found (asked for {settings.stop_found})"
    if settings.max_cpu_hours and cpu >= settings.max_cpu_hours * 3600:
        return f"CPU-time budget spent ({cpu / 3600:.2f} of {settings.max_cpu_hours:g} h)"
    return ""


def audit_choice(folder: CampaignFolder, k: int) -> list[dict[str, Any]]:
    """The ``k`` found crystals of every committed round with the lowest E_hull (their records, structures in)."""
    found = [c for rd in folder.rounds() for c in rd["candidates"] if c["found"]]
    return sorted(found, key=lambda c: c["e_hull"])[:k]


def dft_audit(folder: CampaignFolder, settings: CampaignSettings, engine,
              say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Check the best ``settings.dft_audit`` found crystals with DFT on the campaign's workers; kept in
    ``dft_audit.json`` (done once: a resumed campaign with more rounds audits its new best again).

    The crystals are CHGNet-relaxed already, so DFT takes them as they are; their decomposition phases are
    computed once and kept in the DFT store (:mod:`battgai.materials.dft.store`).
    """
    from pymatgen.core import Structure

    from battgai.materials.dft.verify import verify

    chosen = audit_choice(folder, settings.dft_audit)
    ids = [c["id"] for c in chosen]
    old = folder.dft_audit()
    if old and old["ids"] == ids and old["preset"] == settings.dft_preset:
        return old
    say(f"DFT audit of {len(chosen)} found crystals ({settings.dft_preset})")
    checks = verify([Structure.from_dict(c["structure"]) for c in chosen], settings.dft_preset, as_given=True,
                    given_as="relaxed with chgnet in the campaign",
                    runner=lambda structures, preset: engine.dft(
                        structures, preset, progress=lambda d, n: say(f"DFT audit: {d}/{n} calculations")))
    rows = [{"id": c["id"], **check.row()} for c, check in zip(chosen, checks, strict=True)]
    audit = {"ids": ids, "preset": settings.dft_preset, "rows": rows,
             "confirmed": sum(r["verdict"] == "confirmed" for r in rows),
             "refuted": sum(r["verdict"] == "refuted" for r in rows)}
    write_atomic(folder.root / "dft_audit.json", json.dumps(audit, default=lambda x: None).encode())
    return audit


# --- the run store: a campaign is one run of task materials.campaign ---------------------------------------------


def data_root(out: Path) -> Path:
    """Where a campaign's files live: ``<run>/campaign`` in a run folder of the store, else ``out`` itself."""
    return out / "campaign" if (out / "run.json").exists() else out


def claim_run(path: Path):
    """The stored run at ``path``, taken over by this process and marked running again (to resume it).

    A driver killed with ``kill -9`` leaves its run "running" with a dead owner, which the store reports
    as interrupted; the driver that resumes it becomes its owner.
    """
    from battgai.core import runs

    meta = json.loads((path / "run.json").read_text())
    if meta.get("task") != TASK:
        raise CampaignError(f"{path} is a run of {meta.get('task')!r}, not a campaign")
    meta.update(status="running", finished=None, error="", owner=runs._owner())
    run = runs.Run(path, meta)
    run.set(title=meta["title"])  # writes run.json with the new owner
    return run


def title(settings: CampaignSettings) -> str:
    return (f"Campaign: {settings.rounds} x {settings.per_round} crystals, relax {settings.relax}"
            + (f" ({settings.conditions})" if settings.conditions else ""))
