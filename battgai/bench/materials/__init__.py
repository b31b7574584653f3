"""``python -m battgai.bench materials``: the generator side by side with two baselines, one run.

The generator is run three times: as the product samples it (invalid or non-neutral
crystals rejected and resampled; throughput pays for the rejections), as the raw
model with its logit masks (every crystal that builds), and as the raw model
without the validity masks (the ablation). Baselines use the *same compositions, sizes
and space groups* as the product's samples: (1) pyxtal random structures, (2) ion
substitution into a training structure of the same anonymous formula (prototype),
volume rescaled by atomic radii. Every method is scored by the same code on the
same held-out / training split; CHGNet metrics are given both static (as
generated) and after a CHGNet relaxation, on a subsample.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from battgai import __version__
from battgai.core.registry import REPO_ROOT
from battgai.materials.checks import validate
from battgai.materials.checks.evaluate import by_index, relax_all, score, sun
from battgai.materials.generation.sample import Conditions


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used (a campaign's driver and its Ray workers)."""
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def rounds_within(settings, budget: float) -> tuple[list[dict], float]:
    """Rounds of a campaign with ``settings`` on one Ray worker until ``budget`` CPU seconds (driver and worker
    together) are used, in a throw-away folder: ``(round records, CPU seconds used)``."""
    import os
    import tempfile

    import ray

    from battgai.core import engine
    from battgai.materials.discovery import campaign
    from battgai.materials.discovery.engine import Engine

    started = engine.connect(num_cpus=1)
    try:
        eng = Engine(1)
        pids = [os.getpid(), *eng.pids()]
        with tempfile.TemporaryDirectory() as tmp:
            folder = campaign.CampaignFolder(tmp)
            p = campaign.prepare(settings, folder)
            folder.create(settings, p.lm.sha256, p.notes)
            c0, records = process_cpu_seconds(pids), []
            while process_cpu_seconds(pids) - c0 < budget:
                rec = campaign.run_round(len(records), settings, p.lm, p.conditions, p.judge, eng)
                folder.commit(rec)
                records.append(rec)
            cpu = process_cpu_seconds(pids) - c0
        eng.close()
    finally:
        if started:
            ray.shutdown()
    return records, cpu


RESULTS = REPO_ROOT / "runs" / "materials" / "bench.json"


@dataclasses.dataclass
class Sampled:
    """Structures of one method, aligned by index (None = the method produced nothing)."""

    name: str
    structures: list
    seconds: float

    def produced(self, n: int) -> list:
        """The first ``n`` structures it produced (None skipped): what COV and the distances both score."""
        return [s for s in self.structures if s is not None][:n]


def sample_raw(lm, n: int, seed: int, batch_size: int = 100, validity_masks: bool = True) -> Sampled:
    """The raw model: every sequence's crystal as built (None on dead ends), no rejection.

    ``validity_masks=False`` also drops the neutrality, distance and lattice masks and the lattice look-ahead
    (the ablation column).
    """
    from battgai.materials.generation.sample import sample_tokens
    from battgai.materials.pipeline import build_all

    out = []
    t0 = time.time()
    for b in range(math.ceil(n / batch_size)):
        tokens, ok = sample_tokens(lm, Conditions(), min(batch_size, n - b * batch_size), seed=seed + b,
                                   validity_masks=validity_masks)
        out += [None if x is None else x[0] for x in build_all(tokens, ok)]
    name = "generator, raw model" if validity_masks else "raw model, no validity masks"
    return Sampled(name, out, time.time() - t0)


def sample_product(lm, n: int, seed: int):
    """The page's / CLI's sampler (rejection of invalid and non-neutral crystals): method, tally, space groups."""
    from battgai.materials.pipeline import generate

    t0 = time.time()
    cands, tally = generate(lm, Conditions(), n, seed, known=None)
    sampled = Sampled("generator + rejection (as in the app)", [c.structure for c in cands], time.time() - t0)
    return sampled, tally, [c.spacegroup_asked for c in cands]


def pyxtal_random(structures, spacegroups, seed: int) -> Sampled:
    """pyxtal random crystal with each sample's composition (conventional cell) and space group."""
    from pyxtal import pyxtal

    from battgai.materials.generation import tokenizer as tk

    table = tk.wyckoff_table()
    rng = np.random.default_rng(seed)
    out, t0 = [], time.time()
    for st, sg in zip(structures, spacegroups, strict=True):
        s = None
        if st is not None:
            # The built cell is primitive: the conventional cell holds `centering` times as many atoms.
            counts = {el.symbol: round(amt) * int(table.centering[sg]) for el, amt in st.composition.items()}
            x = pyxtal()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    x.from_random(3, sg, list(counts), list(counts.values()), random_state=int(rng.integers(2**31)))
                    s = x.to_pymatgen()
                    if table.centering[sg] > 1:
                        s = s.get_primitive_structure(tolerance=0.1)
                except Exception:  # pyxtal cannot place this composition in this group
                    s = None
        out.append(s)
    return Sampled("pyxtal random (same composition + space group)", out, time.time() - t0)


def ion_substitution(structures, seed: int) -> Sampled:
    """Substitute each sample's elements into a random training structure of the same anonymous formula."""
    from pymatgen.core import Composition

    from battgai.materials.training.corpus import load_corpus, mp20_frame

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


@functools.cache
def _cdvae_comp_scaler() -> tuple[np.ndarray, np.ndarray]:
    d = json.loads((REPO_ROOT / "battgai" / "materials" / "data" / "cdvae_comp_scaler.json").read_text())
    return np.array(d["means"]), np.array(d["stds"])


def fingerprints(structures) -> tuple[np.ndarray, np.ndarray]:
    """CDVAE coverage fingerprints: mean CrystalNN site fingerprint ("ops" preset), raw Magpie features.

    A structure whose fingerprint cannot be computed gets a row of NaN (CDVAE drops
    it but still counts it in the COV-P denominator).
    """
    from matminer.featurizers.composition import ElementProperty
    from matminer.featurizers.site import CrystalNNFingerprint

    cnn = CrystalNNFingerprint.from_preset("ops")
    magpie = ElementProperty.from_preset("magpie", impute_nan=False)
    struct, comp = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in structures:
            try:
                struct.append(np.mean([cnn.featurize(s, i) for i in range(len(s))], axis=0))
            except Exception:  # CrystalNN finds no neighbours in some degenerate cells
                struct.append(np.full(61, np.nan))
            comp.append(magpie.featurize(s.composition))
    return np.array(struct, dtype=float), np.array(comp, dtype=float)


def heldout_fingerprints(ids, cifs) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of the held-out reference structures, cached under runs/ (about 0.3 s per structure)."""
    cache = RESULTS.parent / "heldout_fingerprints.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if list(z["ids"]) == list(ids):
            return z["struct"], z["comp"]
    fp = fingerprints([validate._parse_cif(c) for c in cifs])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.array(ids), struct=fp[0], comp=fp[1])
    return fp


def _heldout_frame(corpus, n_ref: int, seed: int):
    # The held-out MP-20 rows (all, or n_ref drawn with seed), in material_id order.
    from battgai.materials.training.corpus import mp20_frame

    held = mp20_frame()
    held = held[held.material_id.isin(corpus.ids[corpus.split == "heldout"])].sort_values("material_id")
    if n_ref:
        held = held.sample(n_ref, random_state=seed).sort_values("material_id")
    return held


def heldout_reference(corpus, n_ref: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of the held-out MP-20 structures (all, or ``n_ref`` drawn with ``seed``)."""
    held = _heldout_frame(corpus, n_ref, seed)
    return heldout_fingerprints(list(held.material_id), list(held.cif))


def heldout_properties(corpus, n_ref: int, seed: int) -> np.ndarray:
    """:func:`crystal_properties` of the same held-out structures as :func:`heldout_reference`."""
    return crystal_properties([validate._parse_cif(c) for c in _heldout_frame(corpus, n_ref, seed).cif])


def crystal_properties(structures) -> np.ndarray:
    """Density (g/cm^3) and number of elements of each structure, skipping None: shape ``(n, 2)``."""
    rows = [(s.density, len(s.composition.elements)) for s in structures if s is not None]
    return np.array(rows, dtype=float).reshape(-1, 2)


def distribution_distances(gen: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """CDVAE's property statistics: Wasserstein distances between generated and reference
    densities (g/cm^3) and numbers of elements (rows of :func:`crystal_properties`); 0 = same distribution."""
    from scipy.stats import wasserstein_distance

    return {"wdist_density": float(wasserstein_distance(gen[:, 0], ref[:, 0])),
            "wdist_num_elems": float(wasserstein_distance(gen[:, 1], ref[:, 1]))}


def coverage(gen_fp, ref_fp, struct_cut: float = 0.4, comp_cut: float = 10.0) -> dict[str, float]:
    """COV-R / COV-P as CDVAE computes them for MP-20 (cutoffs 0.4 structure, 10 composition).

    COV-R: share of references with a generated structure within both cutoffs;
    COV-P: share of generated structures within both cutoffs of some reference,
    over all generated ones (those without a fingerprint count as misses).
    Composition features are scaled with CDVAE's fixed Magpie means / stds, NaN -> 0.
    """
    from scipy.spatial.distance import cdist

    mu, sd = _cdvae_comp_scaler()
    n_gen = len(gen_fp[0])
    keep = np.isfinite(gen_fp[0]).all(1)
    ref_keep = np.isfinite(ref_fp[0]).all(1)

    def scale(x):
        return np.nan_to_num((x - mu) / sd, nan=0.0)

    ds = cdist(gen_fp[0][keep], ref_fp[0][ref_keep])
    dc = cdist(scale(gen_fp[1][keep]), scale(ref_fp[1][ref_keep]))
    recall = np.mean((ds.min(0) <= struct_cut) & (dc.min(0) <= comp_cut)) if keep.any() else 0.0
    precision = np.sum((ds.min(1) <= struct_cut) & (dc.min(1) <= comp_cut)) / n_gen if keep.any() else 0.0
    return {"cov_r": float(recall), "cov_p": float(precision)}


CURVE = RESULTS.parent / "coverage_curve.json"
REAL = RESULTS.parent / "coverage_real.json"
TEMPERATURE = RESULTS.parent / "coverage_temperature.json"
CONTACT = RESULTS.parent / "contact_check.json"
NOVEL_ONLY = RESULTS.parent / "novel_only.json"


def at_temperature(lm, n: int, seed: int, temperature: float, element_temperature: float, ref_fp,
                   ref_props: np.ndarray, known, refs, relax_n: int = 100, relax_steps: int = 100) -> dict[str, float]:
    """The app's sampler at another overall and element temperature: COV, uniqueness, novelty, property
    distances, static CHGNet stability and S.U.N. of all ``n`` samples and relaxed S.U.N. of the first
    ``relax_n`` (novelty alone would hide what a hotter sampler costs)."""
    from battgai.materials.pipeline import generate

    cands, _tally = generate(lm, Conditions(), n, seed, known=None, temperature=temperature,
                             element_temperature=element_temperature)
    return {"temperature": temperature, "element_temperature": element_temperature,
            **sampler_quality([c.structure for c in cands], ref_fp, ref_props, known, refs, relax_n, relax_steps)}


def sampler_quality(structures: list, ref_fp, ref_props: np.ndarray, known, refs, relax_n: int,
                    relax_steps: int) -> dict[str, float]:
    """What the side runs report of one sample: uniqueness, novelty, COV and property distances against the
    held-out crystals, static CHGNet stability and S.U.N. over all, relaxed over the first ``relax_n``."""
    sc = score(structures, known)
    uniq_of, novel_of = by_index(sc)
    every = sun(structures, list(range(len(structures))), uniq_of, novel_of, refs, known, relax_steps=0)
    first = sun(structures, list(range(min(relax_n, len(structures)))), uniq_of, novel_of, refs, known, relax_steps)
    return {"n": len(structures), "unique": sc["unique"], "novel": sc["novel"],
            **coverage(fingerprints(structures), ref_fp),
            **distribution_distances(crystal_properties(structures), ref_props),
            "stable_static": every["stable"], "sun_static": every["sun"], "suspect_static": every["suspect"],
            "relax_n": len(first["_ehull"]), "stable_relaxed": first["stable_relaxed"],
            "sun_relaxed": first["sun_relaxed"], "suspect_relaxed": first["suspect_relaxed"]}


def _temperature_flags(run: dict) -> str:
    # The bench flags that made this run; the element temperature alone leaves the overall one at 1.
    flags = [f"--cov-temperature {run['temperature']:g}"] if run["temperature"] != 1 else []
    return " ".join(flags + ([f"--element-temperature {run['element_temperature']:g}"]
                             if run["element_temperature"] != 1 else []))


def temperature_lines(temp: dict | None, novel_only: dict | None) -> list[str]:
    """The temperature runs as a small table, after the app's sampler at temperature 1 when the
    'Novel only' comparison measured it on the same seed and count (nothing when none was run)."""
    if not temp:
        return []
    runs = sorted(temp["runs"], key=lambda m: (m["element_temperature"], m["temperature"]))
    n = runs[0]["n"]
    plain = (novel_only or {}).get("runs", {}).get("app sampler")
    label = "temperature {temperature:g}, element temperature {element_temperature:g}"
    rows = [(label.format(temperature=1, element_temperature=1), plain)] if plain and plain["n"] == n else []
    rows += [(label.format(**m), m) for m in runs]
    flags = ", ".join(f"`{_temperature_flags(m)}`" for m in runs)
    return ["", f"Sampling temperatures: the app's sampler on one seed, {n:,} samples per row ({flags}); COV and "
            f"distances vs {temp['ref']:,} held-out, static CHGNet over all samples. The element temperature divides "
            "only the element tokens' logits, once more:", "",
            "| sampler | novelty | uniqueness | COV-R / COV-P | Wasserstein density / number of elements | stable, "
            "static | S.U.N., static | stable / S.U.N., relaxed (first N) |", "|---|---|---|---|---|---|---|---|",
            *(f"| {name} | {pct(m['novel'])} | {pct(m['unique'])} | {pct(m['cov_r'])} / {pct(m['cov_p'])} | "
              f"{m['wdist_density']:.3f} / {m['wdist_num_elems']:.3f} | {pct(m['stable_static'])} | "
              f"{pct(m['sun_static'])} | "
              + (f"{pct(m['stable_relaxed'])} / {pct(m['sun_relaxed'])} (N = {m['relax_n']})" if "relax_n" in m
                 else "–") + " |" for name, m in rows)]


def novel_only_comparison(lm, n: int, seed: int, ref_fp, ref_props: np.ndarray, known, refs, relax_n: int = 100,
                          relax_steps: int = 100) -> dict[str, dict]:
    """The app's sampler with and without 'Novel only', side by side on one seed.

    Rejecting the crystals that reproduce a training structure makes novelty 100 % by
    construction, so that number proves nothing; what this measures is the rest. Both runs
    check novelty as the page does (both pay for it). Per run: sampling seconds and the tally,
    uniqueness, COV and property distances against the held-out crystals, static CHGNet
    stability and S.U.N. over all ``n``, relaxed S.U.N. over the first ``relax_n``, and static
    S.U.N. crystals per minute of sampling (energies not counted; an untimed run first, so
    neither pays for warming up).
    """
    from battgai.materials.pipeline import generate

    out = {}
    generate(lm, Conditions(), n, seed, known=known)  # untimed: warms torch and the parsed training CIFs
    for name, novel_only in (("app sampler", False), ("app sampler, novel only", True)):
        t0 = time.time()
        cands, tally = generate(lm, Conditions(), n, seed, known=known, novel_only=novel_only)
        seconds = time.time() - t0
        m = sampler_quality([c.structure for c in cands], ref_fp, ref_props, known, refs, relax_n, relax_steps)
        out[name] = {**m, "seconds": seconds, "tally": dataclasses.asdict(tally),
                     "sun_static_per_minute": m["sun_static"] * m["n"] / seconds * 60}
        print(name, {k: v for k, v in out[name].items() if k != "tally"}, tally, flush=True)
    return out


def real_coverage(corpus, n: int, seed: int, ref_fp, ref_props: np.ndarray) -> dict[str, float]:
    """COV and property distances of ``n`` real MP-20 training crystals (drawn with ``seed``) against the
    held-out references.

    What the protocol gives real data at this sample and reference count: the ceiling a
    generator's COV is read against (even real crystals do not reach 100 %), and the floor of its distances.
    """
    real = training_crystals(corpus, n, seed)
    return {**coverage(fingerprints(real), ref_fp), **distribution_distances(crystal_properties(real), ref_props)}


def training_crystals(corpus, n: int, seed: int) -> list:
    """``n`` real MP-20 training crystals drawn with ``seed`` (the same draw for the same arguments)."""
    from battgai.materials.training.corpus import mp20_frame

    df = mp20_frame()
    train = df[df.material_id.isin(corpus.ids[corpus.split == "train"])].sample(n, random_state=seed)
    return [validate._parse_cif(c) for c in train.cif]


def contact_check(lm, n: int, seed: int, refs, known, relax_steps: int = 100, n_real: int = 4000) -> dict:
    """Why the app's sampler rejects overlapping atoms: the raw model's valid, neutral crystals, relaxed.

    ``n`` raw samples (a seed of their own); those that pass the 0.5 A and SMACT checks are grouped
    by closest contact (:func:`~battgai.materials.checks.validate.contact_ratio`) and relaxed with CHGNet
    like the S.U.N. subsample: the share whose relaxation failed, the share that ends stable, and
    the share novel as generated (vs ``known``). For scale, the contact ratios of ``n_real`` real
    MP-20 training crystals.
    """
    from battgai.materials.checks.stability import STABLE_EHULL
    from battgai.materials.training.corpus import load_corpus

    real = np.array([validate.contact_ratio(s) for s in training_crystals(load_corpus(), n_real, seed)])

    raw = sample_raw(lm, n, seed + 7919).structures
    kept = [s for s in raw if s is not None and validate.structural_valid(s)
            and validate.smact_valid(s.composition.element_composition.as_dict())]
    ratio = np.array([validate.contact_ratio(s) for s in kept])
    relaxed = relax_all(kept, relax_steps)
    failed = np.array([x is None for x in relaxed])
    ehull = np.array([math.nan if x is None else refs.hull(x[0].composition, x[1]).e_above_hull for x in relaxed])
    stable = np.nan_to_num(ehull, nan=np.inf) < STABLE_EHULL
    novel = np.array([validate.is_novel(s, known) for s in kept])
    low = validate.MIN_CONTACT_RATIO
    groups = {"< 0.4": ratio < 0.4, f"0.4-{low:g}": (ratio >= 0.4) & (ratio < low), f">= {low:g}": ratio >= low}
    return {"n_sampled": n, "n": len(kept), "threshold": low,
            "real": {"n": n_real, "min": float(real.min()), "below": float((real < low).mean())},
            "groups": {k: {"n": int(m.sum()), "relax_failed": float(failed[m].mean()) if m.any() else math.nan,
                           "stable": float(stable[m].mean()) if m.any() else math.nan,
                           "novel": float(novel[m].mean()) if m.any() else math.nan} for k, m in groups.items()}}


def coverage_curve(lm, sizes: list[int], seed: int, ref_fp) -> dict[str, dict[str, float]]:
    """COV-R / COV-P of the app's sampler for growing sample counts (nested: the first n of one run).

    COV-R grows with the number generated; CDVAE scored 10,000 samples, the side-by-side
    table only ``--cov-n``. Same seed as the table, so its samples are the first ones here.
    """
    from battgai.materials.pipeline import generate

    cands, _tally = generate(lm, Conditions(), max(sizes), seed, known=None)
    fp = fingerprints([c.structure for c in cands])
    out = {}
    for n in sorted(sizes):
        out[str(n)] = coverage((fp[0][:n], fp[1][:n]), ref_fp)
        print("coverage curve", n, out[str(n)], flush=True)
    return out


def conditioned(lm, n: int, seed: int) -> dict[str, float]:
    """Hit rates of hard constraints: element sets and space groups (the app's sampler, with rejection)."""
    from battgai.materials.pipeline import generate

    out = {}
    c = Conditions(allowed_elements=("Li", "Mn", "Fe", "Co", "Ni", "P", "S", "O"), required_elements=("Li",))
    cands, tally = generate(lm, c, n, seed, known=None)
    out["elements_obeyed"] = sum(x.obeys_elements for x in cands) / max(len(cands), 1)
    out["elements_returned"] = len(cands) / n
    out["elements_acceptance"] = tally.accepted / tally.sampled
    hits = total = 0
    per_sg = {}
    for sg in (225, 194, 166, 62, 14):
        cands, _tally = generate(lm, Conditions(spacegroups=(sg,)), n // 5, seed, known=None)
        h = sum(x.spacegroup_found == sg for x in cands)
        per_sg[sg] = h / (n // 5)
        hits, total = hits + h, total + n // 5
    out["spacegroup_hit"] = hits / total
    out["_per_sg"] = per_sg
    return out


#: Property targets of the benchmark: (label, conditions, quantity, hit interval).
PROPERTY_TARGETS = (
    ("formation energy -3..-2 eV/atom", Conditions(formation_energy=-2.5), "formation_energy", (-3.0, -2.0)),
    ("E_hull 'on hull' -> E_hull < 0.1 eV/atom", Conditions(e_above_hull=0.0), "e_above_hull", (-np.inf, 0.1)),
    ("voltage >= 4 V vs Li (Li required)", Conditions(working_ion="Li", voltage=4.5), "voltage", (4.0, np.inf)),
)


def property_values(lm, conditions: Conditions, quantity: str, n: int, seed: int, refs, guidance: float = 1.0,
                    relax_steps: int = 100, oversample: int = 1) -> np.ndarray:
    """``quantity`` of ``n`` samples after a CHGNet relaxation (NaN where it is undefined or failed).

    ``relax_steps=0`` uses static CHGNet energies of the structures as generated.
    ``oversample`` > 1 samples that many times more and keeps the ``n`` that static CHGNet
    puts closest to the targets (the app's screen), before the relaxation.
    The voltage takes the (relaxed) ion-filled structure and the ion-removed framework
    unrelaxed (:func:`~battgai.materials.checks.battery.candidate_voltage`).
    """
    from battgai.materials.checks import battery
    from battgai.materials.checks.stability import static_energies
    from battgai.materials.pipeline import generate

    cands, _tally = generate(lm, conditions, n, seed, known=None, guidance=guidance, oversample=oversample, refs=refs)
    structures = [c.structure for c in cands]
    if relax_steps:
        results = relax_all(structures, relax_steps)
    else:
        results = [(s, float(e)) if np.isfinite(e) else None
                   for s, e in zip(structures, static_energies(structures), strict=True)]
    vals = []
    for r in results:
        if r is None:
            vals.append(math.nan)
        elif quantity == "voltage":
            vals.append(battery.candidate_voltage(r[0], r[1], conditions.working_ion))
        else:
            vals.append(getattr(refs.hull(r[0].composition, r[1]), quantity))
    return np.array(vals + [math.nan] * (n - len(cands)), dtype=float)  # missing candidates are misses


def _hits(values: np.ndarray, lo: float, hi: float) -> float:
    v = np.nan_to_num(values, nan=-np.inf)
    return float(np.mean((v >= lo) & (v < hi))) if len(v) else 0.0


#: The property rows also score the app's screen: this many samples per one kept, by static CHGNet.
SCREEN_OVERSAMPLE = 4
#: The issue's bar for property targets: hit at least this many times as often as unconditional sampling.
HIT_RATIO_TARGET = 2.0


def property_hits(lm, refs, n: int, seed: int, uncond: dict[str, np.ndarray],
                  guidances: tuple[float, ...] = (1.0, 2.0, 3.0), select_n: int = 30,
                  targets: tuple[str, ...] = ()) -> dict:
    """Hit rate of each property target, conditioned vs unconditional, relaxed CHGNet.

    The guidance weight is chosen per target on other samples (seed + 1, ``select_n`` per
    weight, static CHGNet), so the reported rate is not the best of several draws on the
    samples it is scored on. Plain conditioning (w = 1) is reported beside it, and the
    chosen weight with the app's static-CHGNet screen (:data:`SCREEN_OVERSAMPLE` x more
    sampled, the closest to the target kept), relaxed and scored the same way.
    ``uncond`` holds relaxed unconditional values by quantity; the voltage's unconditional
    counterpart (Li required, no target), and any other missing from ``uncond``, is sampled
    here. ``targets`` (label prefixes) limits the rows measured.
    """
    out = {}
    for label, cond, quantity, (lo, hi) in PROPERTY_TARGETS:
        if targets and not label.startswith(targets):
            continue
        selection = {f"{w:g}": _hits(property_values(lm, cond, quantity, select_n, seed + 1, refs, guidance=w,
                                                     relax_steps=0), lo, hi) for w in guidances}
        chosen = max(guidances, key=lambda w: (selection[f"{w:g}"], -w))  # a tie goes to the weaker guidance
        if quantity in uncond:
            base = np.asarray(uncond[quantity], dtype=float)
        else:
            base = property_values(lm, Conditions(working_ion=cond.working_ion), quantity, n, seed, refs)
        row = {"n": n, "uncond": _hits(base, lo, hi), "uncond_median": _median(base), "uncond_n": len(base),
               "selection": selection, "w_chosen": chosen}
        for w in sorted({1.0, chosen}):
            v = property_values(lm, cond, quantity, n, seed, refs, guidance=w)
            row[f"w{w:g}"], row[f"w{w:g}_median"] = _hits(v, lo, hi), _median(v)
        v = property_values(lm, cond, quantity, n, seed, refs, guidance=chosen, oversample=SCREEN_OVERSAMPLE)
        row["screened"], row["screened_median"], row["oversample"] = _hits(v, lo, hi), _median(v), SCREEN_OVERSAMPLE
        out[label] = row
        print("property", label, row, flush=True)
    return out


def _median(v: np.ndarray) -> float:
    return float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan


def _hit_ratio(rate: float, baseline: float) -> float:
    """``rate / baseline`` (conditioned vs unconditional, generator vs baseline); NaN (never "met")
    when the baseline rate is 0, because a handful of lucky hits over zero is not a measured improvement."""
    return rate / baseline if baseline > 0 else math.nan


def _times(ratio: float, digits: int = 1) -> str:
    return "n/a (baseline 0)" if not np.isfinite(ratio) else f"{ratio:.{digits}f}x"


def pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f} %"


def _interval(rate: float, n: int) -> str:
    """95 % Wilson score interval of a rate measured on ``n`` samples, as "lo-hi %"."""
    z = 1.96
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * max(centre - half, 0):.0f}-{100 * min(centre + half, 1):.0f} %"


def _cell(d: dict | None, key: str, fmt=pct) -> str:
    return "–" if d is None or key not in d else fmt(d[key])


def novel_only_lines(run: dict | None) -> list[str]:
    """The 'Novel only' comparison as a small table (nothing when it was not run on these weights)."""
    if not run:
        return []
    plain, novel = run["runs"].values()
    n, k = plain["n"], plain["relax_n"]
    rows = {
        "acceptance (returned / sampled)": lambda m: pct(m["tally"]["accepted"] / m["tally"]["sampled"]),
        "sampling time (s, novelty checks included)": lambda m: f"{m['seconds']:.0f}",
        "novelty": lambda m: pct(m["novel"]),
        "uniqueness": lambda m: pct(m["unique"]),
        f"COV-R / COV-P at {n:,}": lambda m: f"{pct(m['cov_r'])} / {pct(m['cov_p'])}",
        "Wasserstein density / number of elements": lambda m: f"{m['wdist_density']:.3f} / {m['wdist_num_elems']:.3f}",
        f"stable, static CHGNet (all {n:,})": lambda m: pct(m["stable_static"]),
        f"S.U.N., static CHGNet (all {n:,})": lambda m: pct(m["sun_static"]),
        "static S.U.N. crystals per minute of sampling": lambda m: f"{m['sun_static_per_minute']:.0f}",
        f"stable, relaxed CHGNet (first {k})": lambda m: pct(m["stable_relaxed"]),
        f"S.U.N., relaxed CHGNet (first {k})": lambda m: pct(m["sun_relaxed"]),
    }
    return ["", f"'Novel only' (page checkbox, `--novel-only` in the CLI) rejects and resamples crystals that match a "
            f"training structure. Side by side on one seed (`--novel-only {n}`; {n:,} samples each, COV and "
            f"distances vs {run['ref']:,} held-out; its novelty is 100 % by construction, not a result):", "",
            "| | app sampler | novel only |", "|---|---|---|",
            *(f"| {label} | {f(plain)} | {f(novel)} |" for label, f in rows.items())]


def markdown(r: dict, command: str) -> str:
    m = r["methods"]
    names = list(m)
    g, raw = names[0], names[3]
    s, cov, t = r["sun"], r.get("coverage", {}), r["tally"]
    rows = [("produced a structure", "produced"), ("structural validity (>= 99 %)", "valid"),
            ("SMACT (>= 90 %)", "smact"), ("uniqueness (>= 95 %)", "unique"), ("novelty (>= 80 %)", "novel")]
    lines = [f"Command: `{command}`  ", f"Date: {r['date']}; machine: 2 CPU cores (shared), 1 torch thread; "
             f"model `{r['model']}` (sha256 {r['sha256'][:12]}).  ",
             f"Split: by structure; novelty vs all {r['n_train']} training crystals (the generator benchmark's "
             "convention, CDVAE's; the app's 'new' is against every known phase on hand), held-out "
             f"{r['n_heldout']} MP-20 test crystals never trained on.  ",
             f"Samples: N = {r['n']} unconditional per method. The app's sampler rejects crystals with atoms closer "
             "than 0.5 A, with overlapping atoms (below) or without a SMACT charge-neutral assignment and samples "
             "again (it leaves the neutrality mask off: rejecting keeps the compositions the model writes, holding "
             "the site list open made it add elements), so its validity and SMACT are 100 % by construction: it "
             f"drew {t['sampled']} sequences for "
             f"{t['accepted']} crystals (acceptance {pct(t['accepted'] / t['sampled'])}; {t['dead_end']} dead ends, "
             f"{t['invalid']} invalid, {t.get('overlapping', 0)} overlapping, {t['not_neutral']} not neutral), and "
             "its throughput pays for that. The raw model's column is the "
             "network as it decodes (grammar, constraint and validity masks on the logits), without rejection; the "
             "last column also drops the validity masks (neutrality, distance, lattice look-ahead; see "
             "`battgai.materials.generation.sample`). "
             "Baselines are built on the same compositions, sizes and space groups as "
             "the app's samples. Fractions are of all N (a missing structure counts as a miss). Throughput is wall "
             "clock on the shared machine; `--only throughput` (under 'Completed by') re-measures it with nothing "
             "else running.",
             "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(pct(m[k][key]) for k in names) + " |")
    n_sub = r["sun_n"]
    for label, key in ((f"stable, static CHGNet E_hull < 0.1 eV/atom (subsample {n_sub})", "stable"),
                       (f"S.U.N., static (subsample {n_sub})", "sun"),
                       (f"stable after CHGNet relaxation (subsample {n_sub})", "stable_relaxed"),
                       (f"**S.U.N., relaxed** (>= 25 %; subsample {n_sub}; 95 % Wilson interval)", "sun_relaxed")):
        fmt = (lambda x: f"{pct(x)} ({_interval(x, n_sub)})") if key == "sun_relaxed" else pct
        lines.append(f"| {label} | " + " | ".join(_cell(s.get(k), key, fmt) for k in names) + " |")
    for label, key in (("median E_hull, eV/atom, static", "ehull_median"),
                       ("median E_hull, eV/atom, relaxed", "ehull_median_relaxed")):
        lines.append(f"| {label} | " + " | ".join(_cell(s.get(k), key, lambda x: f"{x:.2f}") for k in names) + " |")
    if cov:
        lines.append(f"| COV-R / COV-P (>= 99 %; first {r['cov_n']} vs {r['cov_ref']} held-out) | "
                     + " | ".join(f"{pct(cov[k]['cov_r'])} / {pct(cov[k]['cov_p'])}" if k in cov else "–"
                                  for k in names) + " |")
    dist = r.get("distribution", {})
    if dist:
        lines.append(f"| Wasserstein distance to held-out, density g/cm^3 / number of elements (first {r['cov_n']}; "
                     "lower is closer) | " + " | ".join(f"{dist[k]['wdist_density']:.3f} / "
                                                        f"{dist[k]['wdist_num_elems']:.3f}" if k in dist else "–"
                                                        for k in names) + " |")
    lines.append("| throughput, valid structures / min (>= 1,000) | "
                 + " | ".join(f"{r['throughput'][k]:.0f}" for k in names) + " |")
    targets = {"structural validity (raw model)": (m[raw]["valid"], 0.99), "SMACT (raw model)": (m[raw]["smact"], 0.90),
               "uniqueness": (m[g]["unique"], 0.95), "novelty": (m[g]["novel"], 0.80),
               "S.U.N. (relaxed)": (s[g].get("sun_relaxed", math.nan), 0.25), "throughput": (r["throughput"][g], 1000)}
    if g in cov:
        targets["COV-R"] = (cov[g]["cov_r"], 0.99)
        targets["COV-P"] = (cov[g]["cov_p"], 0.99)
    if "conditioned" in r:
        targets["element constraints"] = (r["conditioned"]["elements_obeyed"], 1.0)
        targets["space-group hit rate"] = (r["conditioned"]["spacegroup_hit"], 0.90)
    for label, row in r.get("properties", {}).items():
        targets[f"{label.split(' ')[0]} hit ratio"] = (_hit_ratio(row[f"w{row['w_chosen']:g}"], row["uncond"]),
                                                         HIT_RATIO_TARGET)
        if "screened" in row:
            targets[f"{label.split(' ')[0]} hit ratio (screened)"] = (_hit_ratio(row["screened"], row["uncond"]),
                                                                      HIT_RATIO_TARGET)
    missed = [k for k, (v, tgt) in targets.items() if not v >= tgt]
    for note in r.get("notes", []):
        lines.insert(4, f"Note: {note}  ")
    if r.get("completed_by"):
        lines.insert(4, "Completed by: " + "; ".join(f"`{c}`" for c in r["completed_by"]) + "  ")
    lines.insert(4, f"**Targets missed:** {', '.join(missed) or 'none'}; met: "
                 f"{', '.join(k for k in targets if k not in missed) or 'none'}. The generator's targets are judged "
                 "on the app's sampler, validity and SMACT on the raw model.  ")
    lines += ["", "S.U.N. ratio generator / baseline, relaxed: "
              + "; ".join(f"{k.split(' (')[0]}: {_times(_hit_ratio(s[g]['sun_relaxed'], s[k]['sun_relaxed']), 2)}"
                          for k in names[1:3] if "sun_relaxed" in s.get(k, {}))
              + "; static: " + "; ".join(f"{k.split(' (')[0]}: {_times(_hit_ratio(s[g]['sun'], s[k]['sun']), 2)}"
                                          for k in names[1:3] if k in s)
              + ". Relaxation: CHGNet FIRE, 100 steps at most, fmax 0.1 eV/A; novelty re-judged on the relaxed "
              "structure. Subsample without an E_hull (invalid, an element without any reference, or a failed "
              "relaxation; counted unstable): "
              + ", ".join(f"{k.split(' ')[0]} {pct(s[k]['no_reference'])}" for k in names if k in s) + "."]
    contact = r.get("contact_check")
    if contact:
        lines += ["", f"Overlapping atoms: the app's sampler also rejects crystals whose closest two atoms are nearer "
                  f"than {contact['threshold']:g} x the sum of their atomic radii (Slater's), where "
                  f"{pct(contact['real']['below'])} of {contact['real']['n']:,} real MP-20 training crystals sit "
                  f"(lowest {contact['real']['min']:.2f}). Why (`--contact-check {contact['n_sampled']}`): of "
                  f"{contact['n']} valid, neutral raw-model crystals relaxed the same way, by closest contact: "
                  + "; ".join(f"{k}: {g['n']} crystals, relaxation failed {pct(g['relax_failed'])}, stable "
                              f"{pct(g['stable'])}, novel {pct(g['novel'])}"
                              for k, g in contact["groups"].items()) + "."]
    if cov:
        lines += ["", "COV follows CDVAE's MP-20 protocol (CrystalNN 'ops' site fingerprints averaged per structure, "
                  "cutoff 0.4; Magpie composition features scaled by CDVAE's fixed means / stds, cutoff 10) but with "
                  f"{r['cov_n']} generated structures per method against {r['cov_ref']} held-out ones; CDVAE used "
                  "10,000 generated against 9,046 test structures, and COV-R grows with the number generated."]
    curve = r.get("coverage_curve")
    if cov and curve:
        lines[-1] += (f" The app's sampler alone, same seed, more samples (`--cov-curve {','.join(curve['cov'])}`): "
                      + "; ".join(f"{int(n):,}: {pct(v['cov_r'])} / {pct(v['cov_p'])}" for n, v in curve["cov"].items())
                      + f" (COV-R / COV-P vs {curve['ref']} held-out).")
    real = r.get("coverage_real")
    if cov and real:
        lines[-1] += (f" Real MP-20 training crystals under the same protocol ({real['n']:,} drawn, "
                      f"`--cov-real {real['n']}`): {pct(real['cov_r'])} / {pct(real['cov_p'])}, the ceiling at this "
                      "sample and reference count.")
        if "wdist_density" in real:
            lines[-1] += (f" Their Wasserstein distances (density / number of elements, as CDVAE's property "
                          f"statistics): {real['wdist_density']:.3f} / {real['wdist_num_elems']:.3f}, the floor.")
    lines += novel_only_lines(r.get("novel_only"))
    lines += temperature_lines(r.get("coverage_temperature"), r.get("novel_only"))
    if "conditioned" in r:
        c = r["conditioned"]
        lines += ["", "Conditioned sampling (hard constraints as logit masks, the app's sampler):", "",
                  "| condition | hit rate | target |", "|---|---|---|",
                  f"| elements within {{Li,Mn,Fe,Co,Ni,P,S,O}}, Li required ({r['cond_n']} asked) | "
                  f"{pct(c['elements_obeyed'])} of returned candidates ({pct(c['elements_returned'])} of those asked "
                  f"returned; acceptance {pct(c['elements_acceptance'])}) | 100 % |",
                  f"| space group asked = found (spglib symprec 0.1; 225, 194, 166, 62, 14) | "
                  f"{pct(c['spacegroup_hit'])} ("
                  + ", ".join(f"{k}: {pct(v)}" for k, v in c["_per_sg"].items()) + ") | >= 90 % |"]
    if "properties" in r:
        lines += ["", "Property targets, relaxed CHGNet (n = samples per cell; w = classifier-free guidance weight, "
                  "w = 1 is plain conditioning). The weight is chosen per target on other samples (another seed, "
                  f"{r['select_n']} per weight, static CHGNet hit rates shown after the semicolon), then scored here; "
                  "hit ratio = chosen-w rate / unconditional rate. An unconditional rate with n = "
                  f"{r['sun_n']} comes from the S.U.N. subsample; otherwise the row sampled its own. Brackets: 95 % "
                  "Wilson intervals; with this many samples they are wide, so read the ratios as indicative. "
                  "Screened: the chosen w with the app's screen (x times more sampled, the n closest to the target "
                  "by static CHGNet kept: rejection by the validated proxy), then relaxed and scored like the rest.",
                  "", "| target | unconditional | w = 1 | chosen w (selection: static hit rate per w) | ratio (>= 2x) "
                  "| chosen w + screen | ratio, screened |", "|---|---|---|---|---|---|---|"]
        for label, row in r["properties"].items():
            w, n_row = f"w{row['w_chosen']:g}", row.get("n", r["prop_n"])
            sel = ", ".join(f"w={k}: {pct(v)}" for k, v in row["selection"].items())
            lines.append(f"| {label} | {pct(row['uncond'])} (n = {row['uncond_n']}; "
                         f"{_interval(row['uncond'], row['uncond_n'])}; median {row['uncond_median']:.2f}) | "
                         f"{pct(row['w1'])} (n = {n_row}; median {row['w1_median']:.2f}) | w = {row['w_chosen']:g}: "
                         f"{pct(row[w])} (n = {n_row}; {_interval(row[w], n_row)}; median {row[w + '_median']:.2f}; "
                         f"{sel}) | {_times(_hit_ratio(row[w], row['uncond']))} | " + (
                             f"{pct(row['screened'])} ({row['oversample']}x sampled; n = {n_row}; "
                             f"{_interval(row['screened'], n_row)}; median {row['screened_median']:.2f}) | "
                             f"{_times(_hit_ratio(row['screened'], row['uncond']))} |" if "screened" in row
                             else "– | – |"))
        # A target most unconditional samples already meet cannot be hit twice as often: say so, with the bound.
        capped = [f"{label.split(' ')[0]} (unconditional {pct(row['uncond'])}, so at most "
                  f"{_times(1 / row['uncond'], 2)})" for label, row in r["properties"].items()
                  if row["uncond"] * HIT_RATIO_TARGET > 1]
        if capped:
            lines += ["", f"Out of reach by construction: a ratio of {HIT_RATIO_TARGET:g}x for "
                      + "; ".join(capped) + "."]
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
    from battgai.materials.checks.stability import ReferencePhases
    from battgai.materials.generation.sample import load_model
    from battgai.materials.training.corpus import load_corpus, training_cifs_by_formula

    p = argparse.ArgumentParser(prog="python -m battgai.bench materials")
    p.add_argument("--model", default="materials_gpt")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--sun-n", type=int, default=100, help="subsample for S.U.N. (at least 1)")
    p.add_argument("--relax-steps", type=int, default=100, help="CHGNet FIRE steps for S.U.N. and property hits")
    p.add_argument("--cond-n", type=int, default=100)
    p.add_argument("--prop-n", type=int, default=40)
    p.add_argument("--select-n", type=int, default=30, help="samples per guidance weight for choosing it")
    p.add_argument("--hull-n", type=int, default=200)
    p.add_argument("--cov-n", type=int, default=1000, help="generated structures per method for COV (0 = skip)")
    p.add_argument("--cov-ref", type=int, default=0, help="held-out references for COV (0 = all)")
    p.add_argument("--volt-n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true",
                   help=f"print only; leave docs/BENCHMARKS.md, the model card, {RESULTS.name} and the side runs' "
                        "files alone")
    p.add_argument("--render-only", action="store_true", help=f"rewrite the table from {RESULTS.name}, no run")
    p.add_argument("--cov-curve", default="", metavar="SIZES",
                   help="only measure the app sampler's COV at these comma-separated sample counts (e.g. "
                        f"1000,2500,5000), save it to {CURVE.name} and re-render the table")
    p.add_argument("--cov-real", type=int, default=0, metavar="N",
                   help=f"only measure COV of N real MP-20 training crystals against the same references (the "
                        f"protocol's ceiling), save it to {REAL.name} and re-render the table")
    p.add_argument("--contact-check", type=int, default=0, metavar="N",
                   help=f"only relax the valid, neutral crystals among N raw-model samples, grouped by closest "
                        f"contact, into {CONTACT.name} (why the sampler rejects overlapping atoms)")
    p.add_argument("--cov-temperature", type=float, default=0.0, metavar="T",
                   help=f"only measure COV, uniqueness, novelty, property distances and S.U.N. (static over all, "
                        f"relaxed over the first --sun-n) of --cov-n samples at sampling temperature T, add them to "
                        f"{TEMPERATURE.name} and re-render the table")
    p.add_argument("--element-temperature", type=float, default=0.0, metavar="E",
                   help="as --cov-temperature (which defaults to 1 then), with element temperature E")
    p.add_argument("--novel-only", type=int, default=0, metavar="N",
                   help=f"only compare N samples of the app's sampler with and without 'Novel only' (COV, "
                        f"static S.U.N. over all N, relaxed S.U.N. over the first --sun-n) into {NOVEL_ONLY.name}")
    p.add_argument("--only", default="", metavar="SECTIONS",
                   help="re-measure only these sections (throughput, distribution, conditioned, properties, "
                        "validation) into "
                        f"{RESULTS.name}, keep the rest")
    p.add_argument("--targets", default="", help="with --only properties: label prefixes of the rows to measure "
                                                 "(e.g. 'E_hull,voltage'); their unconditional rates are sampled anew")
    args = p.parse_args(argv)
    if args.sun_n < 1:  # S.U.N. is a share of this subsample, and the property rows reuse its relaxations
        p.error("--sun-n must be at least 1")
    if args.only:
        torch.set_num_threads(1)
        _measure_only(args, load_model(args.model), "python -m battgai.bench materials " + " ".join(argv or []))
        return
    rerender = args.render_only  # asked for, not implied by a side run below
    if args.contact_check:
        torch.set_num_threads(1)
        lm = load_model(args.model)
        out = contact_check(lm, args.contact_check, args.seed, ReferencePhases.from_mp20(),
                            training_cifs_by_formula(), args.relax_steps)
        _save_side(CONTACT, {"model": lm.name, "sha256": lm.sha256, "version": __version__, "seed": args.seed,
                             **out}, args.no_write)
        args.render_only = True  # a side run re-renders the table and never starts the full run
    if args.cov_curve or args.cov_real or args.cov_temperature or args.element_temperature or args.novel_only:
        # Side measurements of the COV paragraph, each saved to its own file against the same references.
        torch.set_num_threads(1)
        corpus = load_corpus()
        ref_fp = heldout_reference(corpus, args.cov_ref, args.seed)
        lm = load_model(args.model)
        stamp = {"model": lm.name, "sha256": lm.sha256, "version": __version__, "seed": args.seed,
                 "ref": len(ref_fp[0])}
        # Parsed once however many of the side runs below need them (each parses thousands of CIFs).
        ref_props = functools.cache(lambda: heldout_properties(corpus, args.cov_ref, args.seed))
        refs = functools.cache(ReferencePhases.from_mp20)
        if args.cov_curve:
            sizes = [int(x) for x in args.cov_curve.split(",")]
            _save_side(CURVE, {**stamp, "cov": coverage_curve(lm, sizes, args.seed, ref_fp)}, args.no_write)
        if args.cov_real:
            real = real_coverage(corpus, args.cov_real, args.seed, ref_fp, ref_props())
            _save_side(REAL, {"n": args.cov_real, "seed": args.seed, "ref": stamp["ref"], **real}, args.no_write)
        if args.cov_temperature or args.element_temperature:
            run = at_temperature(lm, args.cov_n, args.seed, args.cov_temperature or 1.0,
                                 args.element_temperature or 1.0, ref_fp, ref_props(), training_cifs_by_formula(),
                                 refs(), args.sun_n, args.relax_steps)
            # A trial shows its own run alone, not mixed with the saved runs it would join.
            runs = [run] if args.no_write else _add_run(TEMPERATURE, stamp, run)
            _save_side(TEMPERATURE, {**stamp, "runs": runs}, args.no_write)
        if args.novel_only:
            runs = novel_only_comparison(lm, args.novel_only, args.seed, ref_fp, ref_props(),
                                         training_cifs_by_formula(), refs(), args.sun_n, args.relax_steps)
            _save_side(NOVEL_ONLY, {**stamp, "runs": runs}, args.no_write)
        args.render_only = True  # a side run re-renders the table and never starts the full run
    if args.render_only:
        if args.no_write and not rerender:
            return  # a side trial printed its measurement above; the table holds only saved ones
        if not RESULTS.exists():
            print(f"no {RESULTS.name} yet: the table is rendered after a full run")
            return
        r = _with_curve(json.loads(RESULTS.read_text()))
        md = markdown(r, r.get("command", "python -m battgai.bench materials"))
        print(md)
        if not args.no_write:
            bench_mod.write_section("materials", md)
        return
    torch.set_num_threads(1)
    command = "python -m battgai.bench materials " + " ".join(argv or [])
    lm = load_model(args.model)
    corpus = load_corpus()
    known = training_cifs_by_formula()
    refs = ReferencePhases.from_mp20()
    r: dict = {"date": dt.date.today().isoformat(), "version": __version__, "model": lm.name, "sha256": lm.sha256,
               "n": args.n,
               "n_train": int((corpus.split == "train").sum()), "n_heldout": int((corpus.split == "heldout").sum()),
               "sun_n": args.sun_n, "cond_n": args.cond_n, "prop_n": args.prop_n, "select_n": args.select_n,
               "cov_n": args.cov_n}
    t = time.time()
    methods, tally = sample_methods(lm, args.n, args.seed)
    r["tally"] = dataclasses.asdict(tally)
    print(f"app sampler: {tally}, {methods[0].seconds:.1f} s", flush=True)
    r["methods"], r["throughput"], r["sun"] = {}, throughput(methods), {}
    rng = np.random.default_rng(args.seed)
    both = [i for i in range(args.n) if all(m.structures[i] is not None for m in methods[:3])]
    idx = sorted(rng.choice(both, size=min(args.sun_n, len(both)), replace=False).tolist())
    for k, m in enumerate(methods):
        sc = score(m.structures, known)
        uniq_of, novel_of = by_index(sc)
        r["methods"][m.name] = sc = {k: v for k, v in sc.items() if not k.startswith("_")}
        if k < 3:  # the raw model's S.U.N. would differ from the app's only by its invalid share
            r["sun"][m.name] = sun(m.structures, idx, uniq_of, novel_of, refs, known, args.relax_steps)
        print(m.name, {k: round(v, 3) for k, v in sc.items()},
              {k: v for k, v in r["sun"].get(m.name, {}).items() if not k.startswith("_")},
              f"{time.time() - t:.0f} s", flush=True)
    gname = methods[0].name
    if args.cov_n:
        ref_fp = heldout_reference(corpus, args.cov_ref, args.seed)
        r["cov_ref"] = len(ref_fp[0])
        r["coverage"] = {}
        for m in methods[:3]:
            r["coverage"][m.name] = coverage(fingerprints(m.produced(args.cov_n)), ref_fp)
        print("coverage", r["coverage"], f"{time.time() - t:.0f} s", flush=True)
        r["distribution"] = distributions(methods, args.cov_n, heldout_properties(corpus, args.cov_ref, args.seed))
    r["conditioned"] = conditioned(lm, args.cond_n, args.seed)
    print("conditioned", r["conditioned"], f"{time.time() - t:.0f} s", flush=True)
    if args.prop_n and args.relax_steps:
        uncond = {"formation_energy": r["sun"][gname]["_eform_relaxed"],
                  "e_above_hull": r["sun"][gname]["_ehull_relaxed"]}
        r["properties"] = property_hits(lm, refs, args.prop_n, args.seed, uncond, select_n=args.select_n)
        print("properties", f"{time.time() - t:.0f} s", flush=True)
    _validate_proxies(r, args)
    r["command"] = command.strip()
    _publish(r, args.no_write)


def sample_methods(lm, n: int, seed: int):
    """The five columns' samples (each timed): app sampler, pyxtal, substitution, raw model with / without masks."""
    product, tally, sgs = sample_product(lm, n, seed)
    return [product, pyxtal_random(product.structures, sgs, seed), ion_substitution(product.structures, seed),
            sample_raw(lm, n, seed), sample_raw(lm, n, seed, validity_masks=False)], tally


def distributions(methods, n: int, ref_props: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`distribution_distances` of each method's first ``n`` structures to the references."""
    return {m.name: distribution_distances(crystal_properties(m.produced(n)), ref_props) for m in methods}


def throughput(methods) -> dict[str, float]:
    """Valid structures per minute of each method: its sampling time plus the validity check, no relaxation."""
    out = {}
    for m in methods:
        tv = time.time()
        valid = sum(1 for s in m.structures if s is not None and validate.structural_valid(s))
        out[m.name] = valid / (m.seconds + time.time() - tv) * 60
    return out


def _validate_proxies(r: dict, args) -> None:
    """E_hull proxy vs DFT (MP-20, MPTS-52) and voltage proxy vs DFT, into ``r``."""
    from battgai.materials.checks.battery import validate_voltage_proxy
    from battgai.materials.checks.stability import validate_hull_proxy, validate_hull_proxy_mpts

    if args.hull_n:
        r["hull_validation"] = dataclasses.asdict(validate_hull_proxy(args.hull_n, args.seed))
        print("hull validation", r["hull_validation"], flush=True)
        r["hull_validation_mpts"] = dataclasses.asdict(validate_hull_proxy_mpts(args.hull_n // 2, args.seed))
        print("hull validation MPTS-52", r["hull_validation_mpts"], flush=True)
    if args.volt_n:
        r["voltage_validation"] = dataclasses.asdict(validate_voltage_proxy(args.volt_n, args.seed))
        print("voltage validation", r["voltage_validation"], flush=True)


def _measure_only(args, lm, command: str) -> None:
    # Re-measure some sections of a saved run (same weights) and re-render: for a run that was stopped.
    from battgai.materials.checks.stability import ReferencePhases

    r = json.loads(RESULTS.read_text())
    if r["sha256"] != lm.sha256 or r.get("version") != __version__:
        raise SystemExit(f"{RESULTS} holds a run of other weights or another battgai release (the sampler may "
                         "differ); run the whole benchmark")
    only = set(args.only.split(","))
    done = r.setdefault("completed_by", [])
    if only & {"throughput", "distribution"}:
        methods, _tally = sample_methods(lm, r["n"], args.seed)
        if "throughput" in only:
            r["throughput"] = throughput(methods)
            print("throughput", r["throughput"], flush=True)
        if "distribution" in only:
            from battgai.materials.training.corpus import load_corpus

            r["distribution"] = distributions(methods, r["cov_n"],
                                              heldout_properties(load_corpus(), args.cov_ref, args.seed))
            print("distribution", r["distribution"], flush=True)
    if "conditioned" in only:
        r["conditioned"] = conditioned(lm, r["cond_n"], args.seed)
        print("conditioned", r["conditioned"], flush=True)
    if "properties" in only:
        targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        rows = property_hits(lm, ReferencePhases.from_mp20(), args.prop_n, args.seed, {}, select_n=args.select_n,
                             targets=targets)
        r.setdefault("properties", {}).update(rows)
    if "validation" in only:
        _validate_proxies(r, args)
    done.append(command.strip())
    _publish(r, args.no_write)


def _publish(r: dict, no_write: bool) -> None:
    # Print the report; unless told not to, save the results it is rendered from, the docs section and the card.
    from battgai import bench as bench_mod

    md = markdown(_with_curve(r), r["command"])
    print(md)
    if not no_write:  # a trial run must not replace the saved results the report is rendered from
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(r, indent=1, default=str))
        bench_mod.write_section("materials", md)
        record_in_card(r)


def _save_side(path: Path, data: dict, no_write: bool) -> None:
    # A side measurement is printed, and saved for the table unless this is a trial (--no-write).
    text = json.dumps(data, indent=1)
    print(text, flush=True)
    if not no_write:
        path.write_text(text)


def _add_run(path: Path, stamp: dict, run: dict) -> list[dict]:
    # Runs at other temperatures of the same weights, sampler, seed and references stay; one at the same ones is
    # replaced.
    old = json.loads(path.read_text()) if path.exists() else {}
    keep = old.get("runs", []) if {k: old.get(k) for k in stamp} == stamp else []
    same = ("temperature", "element_temperature", "n")
    return [m for m in keep if [m[k] for k in same] != [run[k] for k in same]] + [run]


def _with_curve(r: dict) -> dict:
    # The coverage curve and the temperature run are separate; they belong in the table only if they scored the same
    # weights, sampler and references. The real-crystal ceiling needs no model, only the same references.
    for path, key in ((CURVE, "coverage_curve"), (TEMPERATURE, "coverage_temperature"), (NOVEL_ONLY, "novel_only")):
        if path.exists():
            extra = json.loads(path.read_text())
            if (extra["sha256"], extra.get("version"), extra["ref"]) == (r["sha256"], r.get("version"),
                                                                          r.get("cov_ref")):
                r = {**r, key: extra}
    if CONTACT.exists():
        extra = json.loads(CONTACT.read_text())
        if (extra["sha256"], extra.get("version")) == (r["sha256"], r.get("version")):
            r = {**r, "contact_check": extra}
    if REAL.exists():
        real = json.loads(REAL.read_text())
        if real["ref"] == r.get("cov_ref"):
            r = {**r, "coverage_real": real}
    return r


def record_in_card(r: dict) -> None:
    """Copy the generator's headline numbers into its model card (the card names this command)."""
    from battgai.core import registry

    card = registry.load_card(r["model"])
    if card.sha256 != r["sha256"]:
        return  # the weights changed since this run; its numbers do not describe them
    names = list(r["methods"])
    g, px, raw = names[0], names[1], names[3]
    m, sun_ = r["methods"], r["sun"]
    card.metrics = {k: v for k, v in card.metrics.items() if not k.startswith("bench_")}
    card.metrics.update({
        "bench_structural_validity_raw": round(m[raw]["valid"], 3), "bench_smact_raw": round(m[raw]["smact"], 3),
        "bench_structural_validity_no_validity_masks": round(m[names[4]]["valid"], 3),
        "bench_smact_no_validity_masks": round(m[names[4]]["smact"], 3),
        "bench_acceptance_with_rejection": round(r["tally"]["accepted"] / r["tally"]["sampled"], 3),
        "bench_uniqueness": round(m[g]["unique"], 3), "bench_novelty": round(m[g]["novel"], 3),
        f"bench_sun_chgnet_relaxed_{r['sun_n']}": round(sun_[g]["sun_relaxed"], 3),
        f"bench_sun_chgnet_static_{r['sun_n']}": round(sun_[g]["sun"], 3),
        f"bench_sun_pyxtal_baseline_relaxed_{r['sun_n']}": round(sun_[px]["sun_relaxed"], 3),
        "bench_spacegroup_hit": round(r["conditioned"]["spacegroup_hit"], 3),
    })
    if "distribution" in r:
        card.metrics["bench_wdist_density"] = round(r["distribution"][g]["wdist_density"], 3)
        card.metrics["bench_wdist_num_elems"] = round(r["distribution"][g]["wdist_num_elems"], 3)
    if "coverage" in r:
        card.metrics[f"bench_cov_r_{r['cov_n']}"] = round(r["coverage"][g]["cov_r"], 3)
        card.metrics[f"bench_cov_p_{r['cov_n']}"] = round(r["coverage"][g]["cov_p"], 3)
    registry.write_card(card)
