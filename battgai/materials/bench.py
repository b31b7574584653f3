"""``python -m battgai.bench materials``: the generator side by side with two baselines, one run.

Baselines use the *same compositions, sizes and space groups* as the generated
samples: (1) pyxtal random structures, (2) ion substitution into a training
structure of the same anonymous formula (prototype), volume rescaled by atomic
radii. Every method is scored by the same code on the same held-out / training
split; CHGNet metrics use static energies (no relaxation) on a subsample.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import time
import warnings

import numpy as np

from battgai.materials import validate
from battgai.materials.sample import Conditions
from battgai.registry import REPO_ROOT

RESULTS = REPO_ROOT / "runs" / "materials" / "bench.json"


@dataclasses.dataclass
class Sampled:
    """Structures of one method, aligned by index (None = the method produced nothing)."""

    name: str
    structures: list
    seconds: float


def sample_generator(lm, n: int, seed: int, batch_size: int = 100):
    """Unconditional samples: structures (None on dead ends), asked space groups, wall seconds."""
    from battgai.materials import tokenizer as tk
    from battgai.materials.build import BuildError, to_structure
    from battgai.materials.sample import sample_tokens

    out, sgs, crystals = [], [], []
    t0 = time.time()
    for b in range(math.ceil(n / batch_size)):
        tokens, ok = sample_tokens(lm, Conditions(), min(batch_size, n - b * batch_size), seed=seed + b)
        for t, good in zip(tokens, ok, strict=True):
            s = wc = None
            if good:
                try:
                    wc = tk.decode(t)
                    s = to_structure(wc)
                except (tk.TokenizeError, BuildError):
                    s = None
            out.append(s)
            sgs.append(wc.spacegroup if wc else None)
            crystals.append(wc)
    return out, sgs, crystals, time.time() - t0


def pyxtal_random(crystals, seed: int) -> Sampled:
    """pyxtal random crystal with each sample's composition (conventional cell) and space group."""
    from pyxtal import pyxtal

    from battgai.materials import tokenizer as tk

    table = tk.wyckoff_table()
    rng = np.random.default_rng(seed)
    out, t0 = [], time.time()
    for wc in crystals:
        s = None
        if wc is not None:
            counts: dict[str, int] = {}
            for site in wc.sites:
                m = int(table.multiplicity[wc.spacegroup, tk.WYCKOFF_LETTERS.index(site.letter)])
                counts[site.element] = counts.get(site.element, 0) + m
            x = pyxtal()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    x.from_random(3, wc.spacegroup, list(counts), list(counts.values()),
                                  random_state=int(rng.integers(2**31)))
                    s = x.to_pymatgen()
                    if len(s) > len(counts) and table.centering[wc.spacegroup] > 1:
                        s = s.get_primitive_structure(tolerance=0.1)
                except Exception:  # pyxtal cannot place this composition in this group
                    s = None
        out.append(s)
    return Sampled("pyxtal random (same composition + space group)", out, time.time() - t0)


def ion_substitution(structures, seed: int) -> Sampled:
    """Substitute each sample's elements into a random training structure of the same anonymous formula."""
    from pymatgen.core import Composition

    from battgai.materials.corpus import load_corpus, mp20_frame

    c = load_corpus()
    train = c.split == "train"
    cif = mp20_frame().set_index("material_id")["cif"]
    protos: dict[str, list[str]] = {}
    for mid, f in zip(c.ids[train], c.formulas[train], strict=True):
        if mid in cif.index:
            protos.setdefault(Composition(f).anonymized_formula, []).append(mid)
    rng = np.random.default_rng(seed)
    out, t0 = [], time.time()

    def order(comp):
        return sorted(comp.elements, key=lambda e: (comp[e], e.X))

    for s in structures:
        new = None
        if s is not None:
            comp = s.composition.reduced_composition
            ids = protos.get(comp.anonymized_formula, [])
            if ids:
                proto = validate._parse_cif(cif[ids[int(rng.integers(len(ids)))]]).copy()
                pcomp = proto.composition.reduced_composition
                mapping = {a.symbol: b.symbol for a, b in zip(order(pcomp), order(comp), strict=True)}
                r_old = sum(_radius(sp.symbol) ** 3 for sp in proto.species)
                proto.replace_species(mapping)
                r_new = sum(_radius(sp.symbol) ** 3 for sp in proto.species)
                proto.scale_lattice(proto.volume * float(r_new / r_old))
                new = proto
        out.append(new)
    return Sampled("ion substitution into known prototype", out, time.time() - t0)


def _radius(symbol: str) -> float:
    from pymatgen.core import Element

    el = Element(symbol)
    # Noble gases have no tabulated atomic radius; the calculated one stands in.
    return float(el.atomic_radius or el.atomic_radius_calculated or 1.5)


def score(structures, known) -> dict[str, float]:
    """Validity, SMACT, uniqueness, novelty as fractions of all attempts (a missing structure fails all)."""
    n = len(structures)
    ok = [s for s in structures if s is not None]
    valid = [validate.structural_valid(s) for s in ok]
    smact = [validate.smact_valid(s.composition.element_composition.as_dict()) for s in ok]
    uniq = validate.unique_mask(ok)
    novel = [validate.is_novel(s, known) for s in ok]
    return {"produced": len(ok) / n, "valid": sum(valid) / n, "smact": sum(smact) / n,
            "unique": sum(uniq) / n, "novel": sum(novel) / n,
            "_unique_mask": uniq, "_novel_mask": novel, "_ok_index": [i for i, s in enumerate(structures) if s]}


def sun(structures, idx, uniq_of, novel_of, refs, progress=None) -> dict[str, float]:
    """S.U.N. (stable by CHGNet static E_hull < 0.1 eV/atom, unique, novel) over subsample ``idx``."""
    from battgai.materials.stability import STABLE_EHULL, static_energies

    sub = [structures[i] for i in idx]
    have = [k for k, s in enumerate(sub) if s is not None and validate.structural_valid(s)]
    e = static_energies([sub[k] for k in have]) if have else []
    ehull, eform = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    for k, en in zip(have, e, strict=True):
        h = refs.hull(sub[k].composition, float(en))
        ehull[k], eform[k] = h.e_above_hull, h.formation_energy
        if progress:
            progress(k, len(idx))
    stable = np.nan_to_num(ehull, nan=np.inf) < STABLE_EHULL
    sun_mask = [bool(stable[k] and uniq_of.get(i, False) and novel_of.get(i, False)) for k, i in enumerate(idx)]
    return {"stable": float(stable.mean()), "sun": float(np.mean(sun_mask)),
            "ehull_median": float(np.nanmedian(ehull)) if np.isfinite(ehull).any() else math.nan,
            "no_reference": float(np.mean(~np.isfinite(ehull))), "_eform": eform.tolist(),  # incl. invalid
            "_ehull": ehull.tolist()}


def fingerprints(structures) -> tuple[np.ndarray, np.ndarray]:
    """CDVAE coverage fingerprints: mean CrystalNN site fingerprint, Magpie composition features."""
    from matminer.featurizers.composition import ElementProperty
    from matminer.featurizers.site import CrystalNNFingerprint

    cnn = CrystalNNFingerprint.from_preset("ops")
    magpie = ElementProperty.from_preset("magpie", impute_nan=True)
    struct, comp = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in structures:
            struct.append(np.mean([cnn.featurize(s, i) for i in range(len(s))], axis=0))
            comp.append(magpie.featurize(s.composition))
    return np.array(struct), np.array(comp)


def coverage(gen_fp, ref_fp, struct_cut: float = 0.4, comp_cut: float = 10.0) -> dict[str, float]:
    """COV-R / COV-P (Xie et al. 2022): share of references with a generated structure within both
    cutoffs, and share of generated structures within both cutoffs of some reference.

    Composition features are standardised with the reference set's mean / std (CDVAE used fixed
    MP-20 train statistics, not available here), so values compare with CDVAE's only roughly.
    """
    from scipy.spatial.distance import cdist

    mu, sd = ref_fp[1].mean(0), ref_fp[1].std(0) + 1e-8
    ds = cdist(gen_fp[0], ref_fp[0])
    dc = cdist((gen_fp[1] - mu) / sd, (ref_fp[1] - mu) / sd)
    recall = np.mean((ds.min(0) <= struct_cut) & (dc.min(0) <= comp_cut))
    precision = np.mean((ds.min(1) <= struct_cut) & (dc.min(1) <= comp_cut))
    return {"cov_r": float(recall), "cov_p": float(precision)}


def conditioned(lm, n: int, seed: int) -> dict[str, float]:
    """Hit rates of hard constraints: element sets and space groups."""
    from battgai.materials.pipeline import generate

    out = {}
    c = Conditions(allowed_elements=("Li", "Mn", "Fe", "Co", "Ni", "P", "S", "O"), required_elements=("Li",))
    cands, failed = generate(lm, c, n, seed, known=None)
    # Dead-end sequences return nothing, so obedience is over returned candidates; dead ends are reported.
    out["elements_obeyed"] = sum(x.obeys_elements for x in cands) / max(len(cands), 1)
    out["elements_dead_end"] = failed / n
    out["elements_valid"] = sum(x.valid_structure for x in cands) / n
    out["elements_smact"] = sum(x.valid_smact for x in cands) / n
    hits = total = 0
    per_sg = {}
    for sg in (225, 194, 166, 62, 14):
        cands, _failed = generate(lm, Conditions(spacegroups=(sg,)), n // 5, seed, known=None)
        h = sum(x.spacegroup_found == sg for x in cands)
        per_sg[sg] = h / (n // 5)
        hits, total = hits + h, total + n // 5
    out["spacegroup_hit"] = hits / total
    out["_per_sg"] = per_sg
    return out


def property_hits(lm, refs, n: int, seed: int, uncond_eform, uncond_ehull) -> dict[str, float]:
    """Property targets by the CHGNet proxies, conditioned vs unconditional samples."""
    from battgai.materials import battery
    from battgai.materials.pipeline import add_energies, generate

    out = {}
    cands, _ = generate(lm, Conditions(formation_energy=-2.5), n, seed, known=None)
    add_energies(cands, refs)
    ef = np.array([c.formation_energy for c in cands])
    out["eform_hit_cond"] = float(np.mean((ef >= -3.0) & (ef < -2.0)))
    u = np.array(uncond_eform, dtype=float)
    out["eform_hit_uncond"] = float(np.mean((u >= -3.0) & (u < -2.0)))
    cands, _ = generate(lm, Conditions(e_above_hull=0.0), n, seed, known=None)
    add_energies(cands, refs)
    eh = np.array([c.e_above_hull for c in cands])
    out["stable_hit_cond"] = float(np.mean(np.nan_to_num(eh, nan=np.inf) < 0.1))
    out["stable_hit_uncond"] = float(np.mean(np.nan_to_num(np.array(uncond_ehull, float), nan=np.inf) < 0.1))
    for label, cond in (("volt_cond", Conditions(working_ion="Li", voltage=4.5)),
                        ("volt_uncond", Conditions(working_ion="Li"))):
        cands, _failed = generate(lm, cond, n, seed, known=None)
        volts = []
        for c in cands:
            if c.valid_structure:
                from battgai.materials.stability import static_energies

                e = float(static_energies([c.structure])[0])
                volts.append(battery.candidate_voltage(c.structure, e, "Li"))
        v = np.array(volts, dtype=float)
        out[f"{label}_hit"] = float(np.mean(np.nan_to_num(v, nan=-99) >= 4.0)) if len(v) else 0.0
        out[f"{label}_median"] = float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan
    return out


def _hit_ratio(rate: float, baseline: float) -> float:
    """``rate / baseline`` (conditioned vs unconditional, generator vs baseline); NaN (never "met")
    when the baseline rate is 0, because a handful of lucky hits over zero is not a measured improvement."""
    return rate / baseline if baseline > 0 else math.nan


def _times(ratio: float, digits: int = 1) -> str:
    return "n/a (baseline 0)" if not np.isfinite(ratio) else f"{ratio:.{digits}f}x"


def pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f} %"


def markdown(r: dict, command: str) -> str:
    m = r["methods"]
    names = list(m)
    rows = [("produced a structure", "produced"), ("structural validity (>= 99 %)", "valid"),
            ("SMACT (>= 90 %)", "smact"), ("uniqueness (>= 95 %)", "unique"), ("novelty (>= 80 %)", "novel")]
    lines = [f"Command: `{command}`  ", f"Date: {r['date']}; machine: 2 CPU cores (shared), 1 torch thread; "
             f"model `{r['model']}` (sha256 {r['sha256'][:12]}).  ",
             f"Split: by structure; novelty vs all {r['n_train']} training crystals, held-out "
             f"{r['n_heldout']} MP-20 test crystals never trained on.  ",
             f"Samples: N = {r['n']} unconditional; baselines built on the same compositions, sizes and "
             "space groups. Fractions are of all N attempts (a dead end or failed build counts as a miss). "
             "Energies are static CHGNet predictions on the structures as generated (no relaxation). "
             "Throughput is wall clock on the shared machine while other jobs ran (load ~4x its cores).",
             "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(pct(m[k][key]) for k in names) + " |")
    s = r["sun"]
    lines.append(f"| stable by CHGNet static E_hull < 0.1 eV/atom (subsample {r['sun_n']}) | "
                 + " | ".join(pct(s[k]["stable"]) for k in names) + " |")
    lines.append(f"| **S.U.N.** (>= 25 %; subsample {r['sun_n']}) | "
                 + " | ".join(pct(s[k]["sun"]) for k in names) + " |")
    lines.append("| median E_hull, eV/atom (static, unrelaxed) | "
                 + " | ".join(f"{s[k]['ehull_median']:.2f}" for k in names) + " |")
    if "coverage" in r:
        cov = r["coverage"]
        lines.append(f"| COV-R / COV-P (>= 99 %; {r['cov_n']} valid vs {r['cov_n']} held-out) | "
                     + " | ".join(f"{pct(cov[k]['cov_r'])} / {pct(cov[k]['cov_p'])}" for k in names) + " |")
    lines.append("| throughput, valid structures / min (>= 1,000) | "
                 + " | ".join(f"{r['throughput'][k]:.0f}" for k in names) + " |")
    g = names[0]
    targets = {"structural validity": (m[g]["valid"], 0.99), "SMACT": (m[g]["smact"], 0.90),
               "uniqueness": (m[g]["unique"], 0.95), "novelty": (m[g]["novel"], 0.80),
               "S.U.N.": (s[g]["sun"], 0.25), "throughput": (r["throughput"][g], 1000)}
    if "coverage" in r:
        targets["COV-R"] = (r["coverage"][g]["cov_r"], 0.99)
        targets["COV-P"] = (r["coverage"][g]["cov_p"], 0.99)
    if "conditioned" in r:
        targets["element constraints"] = (r["conditioned"]["elements_obeyed"], 1.0)
        targets["space-group hit rate"] = (r["conditioned"]["spacegroup_hit"], 0.90)
    if "properties" in r:
        p = r["properties"]
        targets["formation-energy hit ratio"] = (_hit_ratio(p["eform_hit_cond"], p["eform_hit_uncond"]), 2.0)
        targets["E_hull hit ratio"] = (_hit_ratio(p["stable_hit_cond"], p["stable_hit_uncond"]), 2.0)
        targets["voltage hit ratio"] = (_hit_ratio(p["volt_cond_hit"], p["volt_uncond_hit"]), 2.0)
    missed = [k for k, (v, t) in targets.items() if not v >= t]
    lines.insert(4, f"**Targets missed by the generator:** {', '.join(missed) or 'none'}; met: "
                 f"{', '.join(k for k in targets if k not in missed) or 'none'}.  ")
    sun_vs = [_times(_hit_ratio(s[g]["sun"], s[k]["sun"]), 2) for k in names[1:3]]
    lines += ["", f"S.U.N. ratio generator / pyxtal random: {sun_vs[0]}; generator / substitution: {sun_vs[1]}. "
              f"Subsample without an E_hull (structurally invalid, or an element without any reference; "
              "counted unstable): "
              + ", ".join(f"{k.split(' ')[0]} {pct(s[k]['no_reference'])}" for k in names) + "."]
    if "conditioned" in r:
        c = r["conditioned"]
        lines += ["", "Conditioned sampling (hard constraints as logit masks):", "",
                  "| condition | hit rate | target |", "|---|---|---|",
                  f"| elements within {{Li,Mn,Fe,Co,Ni,P,S,O}}, Li required ({r['cond_n']} samples) | "
                  f"{pct(c['elements_obeyed'])} of returned candidates ({pct(c['elements_dead_end'])} of "
                  f"sequences dead-ended; valid {pct(c['elements_valid'])}, SMACT {pct(c['elements_smact'])} "
                  "of all) | 100 % |",
                  f"| space group asked = found (spglib symprec 0.1; 225, 194, 166, 62, 14) | "
                  f"{pct(c['spacegroup_hit'])} ("
                  + ", ".join(f"{k}: {pct(v)}" for k, v in c["_per_sg"].items()) + ") | >= 90 % |"]
    if "properties" in r:
        p = r["properties"]
        lines += [f"| formation energy target -3..-2 eV/atom (CHGNet static proxy, {r['prop_n']} samples) | "
                  f"{pct(p['eform_hit_cond'])} vs unconditional {pct(p['eform_hit_uncond'])} "
                  f"({_times(_hit_ratio(p['eform_hit_cond'], p['eform_hit_uncond']))}) | >= 2x |",
                  f"| E_hull target 'on hull' -> proxy E_hull < 0.1 | {pct(p['stable_hit_cond'])} vs "
                  f"{pct(p['stable_hit_uncond'])} ({_times(_hit_ratio(p['stable_hit_cond'], p['stable_hit_uncond']))})"
                  " | >= 2x |",
                  f"| voltage target >= 4 V (Li, CHGNet static, Li removed unrelaxed) | {pct(p['volt_cond_hit'])} "
                  f"(median {p['volt_cond_median']:.2f} V) vs Li-only {pct(p['volt_uncond_hit'])} "
                  f"(median {p['volt_uncond_median']:.2f} V) | >= 2x |"]
    if "hull_validation" in r:
        h = r["hull_validation"]
        lines += ["", f"Proxy validation (static CHGNet energies on DFT geometries, no relaxation). E_hull on "
                  f"{h['n']} held-out MP-20 structures vs DFT `e_above_hull`: MAE {h['ehull_mae']:.3f} eV/atom, "
                  f"F1(stable < 0.1) {h['stable_f1']:.2f}; this F1 is uninformative because MP-20 keeps only "
                  "structures within 0.08 eV/atom of the hull (no unstable class). Formation energy MAE "
                  f"{h['eform_mae']:.3f} eV/atom vs MP (MP2020-corrected; CHGNet side uncorrected). "
                  f"{h['n_missing']} skipped for lack of elemental references. Caveat: CHGNet was trained on "
                  "MPtrj, which contains these MP relaxations, so this is close to in-distribution."]
    if "hull_validation_mpts" in r:
        h = r["hull_validation_mpts"]
        lines += ["", f"E_hull on {h['n']} MPTS-52 test structures (later MP entries, half DFT-stable, half above "
                  f"0.1 eV/atom; references from MP-20 only): MAE {h['ehull_mae']:.3f} eV/atom, F1(stable) "
                  f"{h['stable_f1']:.2f} (precision {h['stable_precision']:.2f}, recall "
                  f"{h['stable_recall']:.2f}); formation energy MAE {h['eform_mae']:.3f} eV/atom."]
    if "voltage_validation" in r:
        v = r["voltage_validation"]
        lines += ["", f"Average voltage on {v['n_pairs']} insertion-electrode pairs (Li/Na/K/Mg/Zn, <= 40 atoms, "
                  f"DFT geometries, static CHGNet): MAE {v['mae']:.2f} V (median {v['median_abs_error']:.2f} V; "
                  + ", ".join(f"{k} {e:.2f}" for k, e in v["mae_by_ion"].items())
                  + f"). Theoretical capacity formula reproduces the MP `capacity_grav` to 1 mAh/g on "
                  f"{pct(v['capacity_match'])} of {v['capacity_pairs']} fully de-intercalated pairs (the rest are "
                  "multi-step electrodes whose MP capacity spans the whole profile)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from battgai import bench as bench_mod
    from battgai.materials.corpus import load_corpus, training_cifs_by_formula
    from battgai.materials.sample import load_model
    from battgai.materials.stability import ReferencePhases, validate_hull_proxy, validate_hull_proxy_mpts

    p = argparse.ArgumentParser(prog="python -m battgai.bench materials")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--sun-n", type=int, default=100)
    p.add_argument("--cond-n", type=int, default=100)
    p.add_argument("--prop-n", type=int, default=40)
    p.add_argument("--hull-n", type=int, default=200)
    p.add_argument("--cov-n", type=int, default=100, help="structures per side for COV-R / COV-P (0 = skip)")
    p.add_argument("--volt-n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    p.add_argument("--render-only", action="store_true", help=f"rewrite the table from {RESULTS.name}, no run")
    args = p.parse_args(argv)
    if args.render_only:
        r = json.loads(RESULTS.read_text())
        md = markdown(r, r.get("command", "python -m battgai.bench materials"))
        print(md)
        if not args.no_write:
            bench_mod.write_section("materials", md)
        return
    torch.set_num_threads(1)
    command = "python -m battgai.bench materials " + " ".join(argv or [])
    lm = load_model()
    corpus = load_corpus()
    known = training_cifs_by_formula()
    refs = ReferencePhases.from_mp20()
    r: dict = {"date": dt.date.today().isoformat(), "model": lm.name, "sha256": lm.sha256, "n": args.n,
               "n_train": int((corpus.split == "train").sum()), "n_heldout": int((corpus.split == "heldout").sum()),
               "sun_n": args.sun_n, "cond_n": args.cond_n, "prop_n": args.prop_n, "cov_n": args.cov_n}
    t = time.time()
    gen, _sgs, crystals, gen_s = sample_generator(lm, args.n, args.seed)
    print(f"generator: {args.n} in {gen_s:.1f} s", flush=True)
    methods = [Sampled("generator (this model)", gen, gen_s), pyxtal_random(crystals, args.seed),
               ion_substitution(gen, args.seed)]
    r["methods"], r["throughput"], r["sun"] = {}, {}, {}
    rng = np.random.default_rng(args.seed)
    both = [i for i in range(args.n) if all(m.structures[i] is not None for m in methods)]
    idx = sorted(rng.choice(both, size=min(args.sun_n, len(both)), replace=False).tolist())
    for m in methods:
        sc = score(m.structures, known)
        ok = sc.pop("_ok_index")
        uniq_of = dict(zip(ok, sc.pop("_unique_mask"), strict=True))
        novel_of = dict(zip(ok, sc.pop("_novel_mask"), strict=True))
        r["methods"][m.name] = sc
        tv = time.time()  # throughput counts building + the validity check, before any relaxation
        valid = sum(1 for s in m.structures if s is not None and validate.structural_valid(s))
        r["throughput"][m.name] = valid / (m.seconds + time.time() - tv) * 60
        r["sun"][m.name] = sun(m.structures, idx, uniq_of, novel_of, refs)
        print(m.name, {k: round(v, 3) for k, v in sc.items()}, f"{time.time() - t:.0f} s", flush=True)
    gname = methods[0].name
    if args.cov_n:
        from battgai.materials.corpus import mp20_frame

        held = mp20_frame()
        held = held[held.material_id.isin(corpus.ids[corpus.split == "heldout"])]
        ref = [validate._parse_cif(c) for c in held.cif.sample(args.cov_n, random_state=args.seed)]
        ref_fp = fingerprints(ref)
        r["coverage"] = {}
        for m in methods:
            ok = [m.structures[i] for i in idx if m.structures[i] is not None
                  and validate.structural_valid(m.structures[i])][: args.cov_n]
            r["coverage"][m.name] = coverage(fingerprints(ok), ref_fp)
        print("coverage", r["coverage"], f"{time.time() - t:.0f} s", flush=True)
    r["conditioned"] = conditioned(lm, args.cond_n, args.seed)
    print("conditioned", r["conditioned"], f"{time.time() - t:.0f} s", flush=True)
    r["properties"] = property_hits(lm, refs, args.prop_n, args.seed, r["sun"][gname]["_eform"],
                                    r["sun"][gname]["_ehull"])
    print("properties", r["properties"], f"{time.time() - t:.0f} s", flush=True)
    if args.hull_n:
        r["hull_validation"] = dataclasses.asdict(validate_hull_proxy(args.hull_n, args.seed))
        print("hull validation", r["hull_validation"], f"{time.time() - t:.0f} s", flush=True)
        r["hull_validation_mpts"] = dataclasses.asdict(validate_hull_proxy_mpts(args.hull_n // 2, args.seed))
        print("hull validation MPTS-52", r["hull_validation_mpts"], f"{time.time() - t:.0f} s", flush=True)
    if args.volt_n:
        from battgai.materials.battery import validate_voltage_proxy

        r["voltage_validation"] = dataclasses.asdict(validate_voltage_proxy(args.volt_n, args.seed))
        print("voltage validation", r["voltage_validation"], flush=True)
    r["command"] = command.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=1, default=str))
    md = markdown(r, command.strip())
    print(md)
    if not args.no_write:
        bench_mod.write_section("materials", md)
        record_in_card(r)


def record_in_card(r: dict) -> None:
    """Copy the generator's headline numbers into its model card (the card names this command)."""
    from battgai import registry

    card = registry.load_card(r["model"])
    if card.sha256 != r["sha256"]:
        return  # the weights changed since this run; its numbers do not describe them
    g = next(iter(r["methods"]))
    m, sun_ = r["methods"][g], r["sun"]
    card.metrics.update({
        "bench_structural_validity": round(m["valid"], 3), "bench_smact": round(m["smact"], 3),
        "bench_uniqueness": round(m["unique"], 3), "bench_novelty": round(m["novel"], 3),
        f"bench_sun_chgnet_static_{r['sun_n']}": round(sun_[g]["sun"], 3),
        f"bench_sun_pyxtal_baseline_{r['sun_n']}": round(sun_[list(sun_)[1]]["sun"], 3),
        "bench_spacegroup_hit": round(r["conditioned"]["spacegroup_hit"], 3),
    })
    if "coverage" in r:
        card.metrics[f"bench_cov_r_{r['cov_n']}"] = round(r["coverage"][g]["cov_r"], 3)
        card.metrics[f"bench_cov_p_{r['cov_n']}"] = round(r["coverage"][g]["cov_p"], 3)
    path = registry.weights_dir() / f"{card.name}.json"
    path.write_text(json.dumps(card.as_dict(), indent=2) + "\n")
