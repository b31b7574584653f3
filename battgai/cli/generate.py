"""``python -m battgai generate``: batch generation without the UI, streamed to disk and resumable.

Writes ``OUT/cifs/<id>.cif`` for every candidate, appends one row per candidate
to ``OUT/checks.csv`` after each batch and keeps ``OUT/provenance.json``. Run
the same command again after an interruption and it continues with the next
unfinished batch (batch ``b`` always uses the same seed), so the result equals
an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from battgai.materials.generation.sample import DEFAULT_MODEL, check_conditions, load_model, parse_conditions
from battgai.materials.pipeline import (
    MAX_OVERSAMPLE,
    MAX_SAMPLED_PER_CANDIDATE,
    Tally,
    UniqueTracker,
    add_energies,
    generate_batches,
    screen_problems,
)


def _progress(done: int, total: int, t0: float) -> None:
    rate = done / max(time.time() - t0, 1e-9) * 60
    sys.stderr.write(f"\r{done}/{total} sampled ({rate:.0f}/min)")
    sys.stderr.flush()


def generate_to_dir(n: int, conditions_text: str, out: Path, seed: int = 0, batch_size: int = 100,
                    model: str = DEFAULT_MODEL, energies: bool = False, novelty: bool = True,
                    resample: bool = True, guidance: float = 2.0, oversample: int = 1,
                    temperature: float = 1.0, novel_only: bool = False, element_temperature: float = 1.0) -> int:
    """Generate ``n`` candidates into ``out`` (resuming a previous run there); returns candidates written.

    ``oversample`` > 1 keeps the best of that many times more crystals by static CHGNet
    energies (:func:`~battgai.materials.pipeline.screen`); ``novel_only`` rejects and
    resamples crystals that match a training structure; ``element_temperature`` divides the
    logits of element tokens once more."""
    from battgai import __version__
    from battgai.core.provenance import Provenance

    conditions = parse_conditions(conditions_text)
    problems = check_conditions(conditions)
    if problems:
        raise SystemExit("impossible conditions: " + " ".join(problems))
    lm = load_model(model)
    settings = {"n": n, "conditions": conditions.as_dict(), "batch_size": batch_size, "energies": energies,
                "resample": resample, "guidance": guidance, "oversample": oversample,
                "temperature": temperature,
                # Absent at their defaults, so folders written before these settings existed still resume.
                **({"novel_only": True} if novel_only else {}),
                **({"element_temperature": element_temperature} if element_temperature != 1.0 else {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cifs").mkdir(exist_ok=True)
    prov_path, csv_path = out / "provenance.json", out / "checks.csv"
    if prov_path.exists():
        old = json.loads(prov_path.read_text())
        if (old["settings"], old["seed"], old["sha256"]) != (json.loads(json.dumps(settings)), seed, lm.sha256):
            raise SystemExit(f"{out} holds a run with other settings; use a new --out folder")
        if old.get("battgai_version") != __version__:  # the sampler may have changed: do not mix two in one run
            raise SystemExit(f"{out} holds a run of battgai {old.get('battgai_version')}, this is {__version__}; "
                             "use a new --out folder")
    else:
        prov_path.write_text(Provenance.now(lm.name, lm.sha256, settings, seed).to_json())
    from battgai.materials.checks.references import known_phases, reference_phases

    known = refs = None
    known_line = "the newness check is switched off"
    if novelty:
        known, known_line = known_phases()
        sys.stderr.write(known_line + "\n")
    if energies or oversample > 1:
        refs, source = reference_phases()
        sys.stderr.write(source + "\n")
    problems = screen_problems(conditions, refs) if oversample > 1 else []
    if problems:
        raise SystemExit("cannot screen: " + " ".join(problems))
    if novel_only and known is None:
        raise SystemExit(f"--novel-only needs the known-phase index: {known_line}")
    tracker, start, rows = UniqueTracker(), 0, []
    # Unique structures are also kept as pymatgen JSON: CIF does not round-trip overlapping atoms,
    # and resuming must judge uniqueness exactly as an uninterrupted run would.
    seen_path = out / "unique_structures.jsonl"
    if csv_path.exists():
        from pymatgen.core import Structure

        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        start = max(int(r["batch"]) for r in rows) + 1 if rows else 0
        if seen_path.exists():
            for line in seen_path.read_text().splitlines():
                batch, d = json.loads(line)
                if batch < start:
                    tracker.buckets.setdefault(Structure.from_dict(d).composition.reduced_formula, []).append(
                        Structure.from_dict(d))
    written, t0, total = len(rows), time.time(), Tally()
    for b, cands, tally in generate_batches(lm, conditions, n, seed, batch_size, known, tracker, start,
                                            resample=resample, guidance=guidance, oversample=oversample,
                                            refs=refs, temperature=temperature, novel_only=novel_only,
                                            element_temperature=element_temperature):
        if energies and oversample == 1:  # a screen has added them already
            add_energies(cands, refs, conditions.working_ion)
        new_rows = []
        for k, c in enumerate(cands):
            cid = f"{b:05d}_{k:04d}"
            c.structure.to(filename=str(out / "cifs" / f"{cid}.cif"))
            new_rows.append({"id": cid, "batch": b, **c.row()})
        with open(seen_path, "a") as f:
            for c in cands:
                if c.unique:
                    f.write(json.dumps([b, c.structure.as_dict()]) + "\n")
        if new_rows:
            new_file = not csv_path.exists()
            with open(csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(new_rows[0]))
                if new_file:
                    w.writeheader()
                w.writerows(new_rows)
        written += len(new_rows)
        total += tally
        _progress(min((b + 1) * batch_size, n), n, t0)
    sys.stderr.write("\n")
    if reason := total.shortfall_reason(n - min(start * batch_size, n)):  # the batches of this invocation
        sys.stderr.write(reason + "\n")
    return written


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--n", type=int, required=True,
                   help="candidates to write (with resampling, sequences are drawn until this many pass, "
                        f"at most {MAX_SAMPLED_PER_CANDIDATE} per candidate; a shortfall is explained at the end)")
    g.add_argument("--conditions", default="",
                   help='e.g. "allowed=Li,Fe,P,O;required=Li;ion=Li;system=orthorhombic;natoms=14;'
                        'e_above_hull=0;voltage=3.5"')
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=100)
    g.add_argument("--model", default=DEFAULT_MODEL)
    g.add_argument("--energies", action="store_true", help="CHGNet static energy, E_hull and voltage (slow)")
    g.add_argument("--no-novelty", action="store_true", help="skip matching against every known phase")
    g.add_argument("--keep-invalid", action="store_true",
                   help="return every crystal that builds (default: resample invalid, overlapping or non-neutral ones)")
    g.add_argument("--guidance", type=float, default=2.0,
                   help="classifier-free guidance weight on property targets (1 = plain conditioning; "
                        "2, the default, hit them most often in docs/BENCHMARKS.md)")
    g.add_argument("--screen", type=int, default=1, metavar="K",
                   help=f"sample K times more crystals (K <= {MAX_OVERSAMPLE}) and keep those whose static CHGNet "
                        "energies come closest to the formation-energy, E_hull or voltage targets")
    g.add_argument("--temperature", type=float, default=1.0,
                   help="divides the logits: below 1 stays closer to the training crystals (lower COV-R and "
                        "novelty in docs/BENCHMARKS.md), above 1 strays further")
    g.add_argument("--element-temperature", type=float, default=1.0,
                   help="divides the logits of element tokens once more: above 1 writes less common elements "
                        "into familiar structures (1.4: novelty 80 %% instead of 73 %%, about the same S.U.N. "
                        "rate, fewer stable, in docs/BENCHMARKS.md)")
    g.add_argument("--novel-only", action="store_true",
                   help="reject crystals that match a known phase (StructureMatcher; MP-20 all splits, MPTS-52, "
                        "insertion electrodes) and sample again")


def run_cli(args: argparse.Namespace) -> int:
    problem = None
    if args.temperature <= 0 or args.element_temperature <= 0:
        problem = "--temperature and --element-temperature must be above 0"
    elif args.novel_only and args.no_novelty:
        problem = "--novel-only needs the novelty check; drop --no-novelty"
    if problem:  # worded and numbered as argparse's own usage errors
        print(f"python -m battgai generate: error: {problem}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    n = generate_to_dir(args.n, args.conditions, args.out, args.seed, args.batch_size, args.model,
                        args.energies, not args.no_novelty, not args.keep_invalid, args.guidance, args.screen,
                        args.temperature, args.novel_only, args.element_temperature)
    print(f"{n} candidates in {args.out}")
    return 0
