"""The training corpus: MP-20 structures (+ insertion-electrode structures) as token sequences.

Rows come from ``mp_20_cif_only`` (full MP-20 val + test, 11,249 train rows);
properties are joined on ``material_id`` from ``mp_20_biternary`` and
``mp_20_pilot``. Discharged insertion-electrode structures carry the average
voltage of their pair. The split is by structure: a fixed set of MP-20 *test*
structures (chosen by a hash of the material id, so it never changes) is held
out for coverage / property metrics; everything else is training data, and
novelty is judged against all of it. Parsing takes ~15 min on one core, so the
result is cached under ``runs/materials/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from battgai.core import data
from battgai.core.registry import REPO_ROOT
from battgai.materials.generation import tokenizer as tk

CACHE = REPO_ROOT / "runs" / "materials" / "corpus_v1.npz"
ALT_CACHE = REPO_ROOT / "runs" / "materials" / "corpus_alt_v1.npz"
HELDOUT_FRACTION = 1 / 3  # of the MP-20 test split: ~3,000 structures
WORKING_IONS = ("Li", "Na", "K", "Mg", "Zn")


@dataclasses.dataclass
class Corpus:
    """Token sequences of all parsed crystals with ids, split and property values."""

    ids: np.ndarray  # (N,) str material ids
    formulas: np.ndarray  # (N,) str reduced formulas
    split: np.ndarray  # (N,) str "train" | "heldout"
    tokens: np.ndarray  # (N, SEQ_LEN) int16
    props: np.ndarray  # (N, 4) float, NaN = unknown; order of tokenizer.PROPERTIES
    n_failed: int  # crystals that could not be tokenized
    failures: dict[str, int]  # reason -> count

    def subset(self, split: str) -> Corpus:
        m = self.split == split
        return dataclasses.replace(self, ids=self.ids[m], formulas=self.formulas[m], split=self.split[m],
                                   tokens=self.tokens[m], props=self.props[m])


def is_heldout(material_id: str) -> bool:
    """Deterministic held-out membership of an MP-20 test structure (by id hash)."""
    h = int(hashlib.sha256(material_id.encode()).hexdigest()[:8], 16)
    return h / 2**32 < HELDOUT_FRACTION


@functools.cache
def mp20_frame() -> pd.DataFrame:
    """All MP-20 rows on hand: ``material_id, cif, mp20_split, formation_energy, band_gap, e_above_hull``."""
    root = data.dataset_path("mp_20_cif_only")
    frames = []
    for split, fname in (("train", "train_subset"), ("val", "val"), ("test", "test")):
        df = pd.read_csv(root / f"{fname}.csv.gz", usecols=["material_id", "input", "output"])
        frames.append(df.rename(columns={"output": "cif"}).assign(mp20_split=split))
    df = pd.concat(frames, ignore_index=True).drop_duplicates("material_id")
    # "Material composition is Rb2Hg7. It has ..." -> the formula, without parsing the CIF.
    df["formula"] = df.pop("input").str.extract(r"composition is (\S+?)\.", expand=False)
    props = []
    for key, files in (("mp_20", ("val", "test")), ("mp_20_pilot", ("train", "val", "test"))):
        try:
            root = data.dataset_path(key)
        except data.DataNotFound:
            continue
        for f in files:
            props.append(pd.read_csv(root / f"{f}.csv.gz", usecols=[
                "material_id", "formation_energy_per_atom", "band_gap", "e_above_hull"]))
    if props:
        p = pd.concat(props).drop_duplicates("material_id")
        df = df.merge(p, on="material_id", how="left")
    else:
        df = df.assign(formation_energy_per_atom=np.nan, band_gap=np.nan, e_above_hull=np.nan)
    return df.rename(columns={"formation_energy_per_atom": "formation_energy"})


@functools.cache
def electrode_pairs() -> pd.DataFrame:
    """Insertion-electrode voltage pairs with the working ion and both CIFs (``high_cif``, ``low_cif``)."""
    root = data.dataset_path("insertion_electrodes")
    pairs = pd.read_csv(root / "electrodes.csv.gz", index_col=0)
    pairs = pairs[~pairs.battery_id.str.startswith("cid-")].copy()
    pairs["ion"] = pairs.battery_id.str.split("_").str[-1]
    cifs = pd.read_csv(root / "electrode_structures.csv.gz").set_index("material_id")["cif"]
    pairs["high_cif"] = pairs.high_mpid.map(cifs)
    pairs["low_cif"] = pairs.low_mpid.map(cifs)
    return pairs.dropna(subset=["high_cif", "low_cif"]).reset_index(drop=True)


def _source_rows() -> list[tuple[str, str, dict, str]]:
    """``(material id, split, properties, CIF)`` of every structure the corpus is built from."""
    rows: list[tuple[str, str, dict, str]] = []
    for r in mp20_frame().itertuples():
        split = "heldout" if r.mp20_split == "test" and is_heldout(r.material_id) else "train"
        props = {"formation_energy": r.formation_energy, "band_gap": r.band_gap,
                 "e_above_hull": r.e_above_hull}
        rows.append((r.material_id, split, props, r.cif))
    seen = {r[0] for r in rows}
    try:
        pairs = electrode_pairs()
    except data.DataNotFound:
        pairs = pd.DataFrame(columns=["low_mpid", "low_cif", "average_voltage", "ion"])
    for r in pairs[pairs.ion.isin(WORKING_IONS)].drop_duplicates("low_mpid").itertuples():
        if r.low_mpid not in seen:
            rows.append((r.low_mpid, "train", {"voltage": r.average_voltage}, r.low_cif))
    return rows


def _parse(cif: str):
    """The CIF's structure; TokenizeError beyond MAX_ATOMS atoms."""
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Structure.from_str(cif, fmt="cif")
    if len(s) > tk.MAX_ATOMS:
        raise tk.TokenizeError(f"more than {tk.MAX_ATOMS} atoms")
    return s


def build_corpus(progress: Callable[[int, int], None] | None = None) -> Corpus:
    """Parse and tokenize every structure (slow: ~30 ms each); see :func:`load_corpus`."""
    rows = _source_rows()
    ids, formulas, splits, toks, props, failures = [], [], [], [], [], {}
    for i, (mid, split, p, cif) in enumerate(rows):
        if progress:
            progress(i, len(rows))
        try:
            s = _parse(cif)
            toks.append(tk.encode(tk.from_structure(s), p))
        except Exception as exc:
            reason = re.sub(r"\d+(\.\d+)?", "N", str(exc).split(":")[0])[:60]  # group by kind, not value
            failures[reason] = failures.get(reason, 0) + 1
            continue
        ids.append(mid)
        formulas.append(s.composition.reduced_formula)
        splits.append(split)
        props.append([p.get(k, np.nan) for k in tk.PROPERTIES])
    return Corpus(np.array(ids), np.array(formulas), np.array(splits), np.stack(toks),
                  np.array(props, dtype=float), sum(failures.values()), failures)


def _report_every_1000(what: str) -> Callable[[int, int], None]:
    """A progress callback printing ``what i/n (seconds)`` every 1,000 crystals of a slow build."""
    t0 = time.time()

    def report(i: int, n: int) -> None:
        if i % 1000 == 0:
            print(f"{what} {i}/{n} ({time.time() - t0:.0f} s)", flush=True)

    return report


def load_corpus(cache: Path = CACHE, rebuild: bool = False) -> Corpus:
    """The tokenized corpus, from the cache if present (built and cached otherwise)."""
    if cache.exists() and not rebuild:
        z = np.load(cache, allow_pickle=False)
        reasons = [str(x) for x in z["fail_reasons"]]
        return Corpus(z["ids"], z["formulas"], z["split"], z["tokens"], z["props"],
                      int(z["fail_counts"].sum()), dict(zip(reasons, z["fail_counts"].tolist(), strict=True)))
    c = build_corpus(_report_every_1000("tokenized"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, ids=c.ids, formulas=c.formulas, split=c.split, tokens=c.tokens, props=c.props,
                        fail_reasons=np.array(list(c.failures), dtype=str),
                        fail_counts=np.array(list(c.failures.values()), dtype=np.int64))
    return c


@dataclasses.dataclass
class Alternatives:
    """Equivalent token sequences of training crystals (see :func:`tokenizer.equivalent_forms`).

    Rows of one crystal are contiguous: crystal ``i`` owns ``tokens[start[i]: start[i] + count[i]]``,
    the sequence :func:`build_corpus` writes first.
    """

    ids: np.ndarray  # (N,) str material ids
    tokens: np.ndarray  # (M, SEQ_LEN) int16
    start: np.ndarray  # (N,) int64
    count: np.ndarray  # (N,) int64, >= 1

    def align(self, ids: np.ndarray) -> Alternatives:
        """The same forms, crystal ``i`` being ``ids[i]`` (KeyError when one has none)."""
        pos = {m: i for i, m in enumerate(self.ids)}
        j = np.array([pos[m] for m in ids], dtype=np.int64)
        return Alternatives(np.asarray(ids), self.tokens, self.start[j], self.count[j])

    def draw(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random equivalent sequence of each crystal in ``idx``."""
        return self.tokens[self.start[idx] + rng.integers(0, self.count[idx])]


def build_alternatives(progress: Callable[[int, int], None] | None = None) -> Alternatives:
    """Every distinct equivalent sequence of each training crystal (~80 ms per crystal).

    Independent of the corpus cache (so both can be built at once); crystals that
    do not tokenize are left out, as :func:`build_corpus` leaves them out.
    """
    rows = [r for r in _source_rows() if r[1] == "train"]
    ids, toks, start, count = [], [], [], []
    for i, (mid, _, props, cif) in enumerate(rows):
        if progress:
            progress(i, len(rows))
        try:
            s = _parse(cif)
            forms: list[np.ndarray] = []
            for form in tk.equivalent_forms(s):
                seq = tk.encode(form, props)
                if not any(np.array_equal(seq, f) for f in forms):
                    forms.append(seq)
        except Exception:  # as in build_corpus: a crystal that does not parse or tokenize is skipped
            continue
        ids.append(mid)
        start.append(len(toks))
        count.append(len(forms))
        toks.extend(forms)
    return Alternatives(np.array(ids), np.stack(toks), np.array(start, dtype=np.int64),
                        np.array(count, dtype=np.int64))


def load_alternatives(cache: Path = ALT_CACHE) -> Alternatives:
    """:func:`build_alternatives`, from the cache if present (built and cached otherwise)."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return Alternatives(z["ids"], z["tokens"], z["start"], z["count"])
    a = build_alternatives(_report_every_1000("equivalent forms"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, ids=a.ids, tokens=a.tokens, start=a.start, count=a.count)
    return a


@functools.cache
def training_cifs_by_formula() -> dict[str, list[str]]:
    """CIF text of every training structure, bucketed by reduced formula (for novelty checks).

    Built from the data files directly (formulas from the text, no CIF parsing),
    so it needs no tokenized corpus. It holds every non-held-out MP-20 structure
    and every discharged insertion-electrode structure of the working ions: a
    slight superset of what the model saw (crystals that failed tokenization
    are included), which makes novelty stricter, never looser.
    """
    from pymatgen.core import Composition

    out: dict[str, list[str]] = {}
    df = mp20_frame()
    for mid, split, formula, cif in zip(df.material_id, df.mp20_split, df.formula, df.cif, strict=True):
        if not (split == "test" and is_heldout(mid)):
            out.setdefault(Composition(formula).reduced_formula, []).append(cif)
    try:
        pairs = electrode_pairs()
    except data.DataNotFound:
        return out
    low = pairs[pairs.ion.isin(WORKING_IONS)].drop_duplicates("low_mpid")
    for formula, cif in zip(low.low_formula, low.low_cif, strict=True):
        out.setdefault(Composition(formula).reduced_formula, []).append(cif)
    return out


#: Where a known phase comes from (``known_phase_cifs``); the order is the bundled index's source code.
KNOWN_SOURCES = ("mp20-train", "mp20-val", "mp20-test", "mpts52-val", "mpts52-test", "electrodes")


def known_phase_cifs() -> pd.DataFrame:
    """Every crystal on hand that is a known phase: ``material_id, source, training, cif``, one row per id.

    All MP-20 rows (every split, the held-out test structures included), MPTS-52 val and test and every
    insertion-electrode structure (charged and discharged, of every ion). ``training`` marks what
    :func:`training_cifs_by_formula` holds: the generator benchmark's novelty (CDVAE's convention) is
    judged against those only, a discovery against all. An id in several sources keeps its first
    source in :data:`KNOWN_SOURCES` order (MPTS-52 repeats 1,985 MP-20 ids).
    """
    df = mp20_frame()
    frames = [pd.DataFrame({"material_id": df.material_id, "source": "mp20-" + df.mp20_split,
                            "training": [not (sp == "test" and is_heldout(m))
                                         for m, sp in zip(df.material_id, df.mp20_split, strict=True)],
                            "cif": df.cif})]
    with contextlib.suppress(data.DataNotFound):
        root = data.dataset_path("mpts_52")
        for split in ("val", "test"):
            m = pd.read_csv(root / f"{split}.csv.gz", usecols=["material_id", "cif"])
            frames.append(m.assign(source=f"mpts52-{split}", training=False))
    with contextlib.suppress(data.DataNotFound):
        root = data.dataset_path("insertion_electrodes")
        e = pd.read_csv(root / "electrode_structures.csv.gz", usecols=["material_id", "cif"])
        pairs = electrode_pairs()
        trained = set(pairs[pairs.ion.isin(WORKING_IONS)].low_mpid)
        frames.append(e.assign(source="electrodes", training=e.material_id.isin(trained)))
    out = pd.concat(frames, ignore_index=True)
    # A discharged electrode structure the generator trained on may also be a held-out MP-20 row: it stays trained.
    out["training"] = out.groupby("material_id").training.transform("any")
    return out.drop_duplicates("material_id").reset_index(drop=True)[["material_id", "source", "training", "cif"]]
