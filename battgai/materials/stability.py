"""Energies with CHGNet and energy above the convex hull against MP-20 phases.

How energies are referenced
---------------------------
Every energy here is a CHGNet 0.3 prediction (weights bundled in the ``chgnet``
wheel; trained on MPtrj, i.e. MP GGA/GGA+U total energies). Candidates and
references are computed with the same potential: references are the MP-20
structures (their DFT-relaxed geometry, *static* CHGNet energy, no relaxation)
whose elements are a subset of the candidate's. Nine metals have no elemental
MP-20 phase (Al, Cr, Lu, Mo, Os, Pt, Th, V, Zn); their textbook bcc / fcc / hcp
structure, CHGNet-relaxed, stands in. Formation energies are per atom
relative to the lowest-energy elemental MP-20 phase of each element, also with
static CHGNet energies; no MP2020 anion / U corrections are applied to either
side. E_hull is the distance to the lower hull of those references (pymatgen
``PhaseDiagram``). An element with no elemental reference at all (e.g. noble
gases, actinides beyond Th) makes E_hull missing (NaN), not guessed.

References
----------
Deng et al., "CHGNet as a pretrained universal neural network potential for
charge-informed atomistic modelling", Nat. Mach. Intell. 5, 1031 (2023).
Ong et al., "Li-Fe-P-O2 phase diagram from first principles calculations",
Chem. Mater. 20, 1798 (2008) (convex hull construction).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from battgai.registry import REPO_ROOT

ENERGY_CACHE = REPO_ROOT / "runs" / "materials" / "chgnet_static_energies.json"
STABLE_EHULL = 0.1  # eV/atom, the MatterGen / DiffCSP "stable" threshold
Progress = Callable[[int, int], None]
_lock = threading.Lock()


@functools.cache
def load_chgnet():
    """The bundled CHGNet model (offline; ~0.1 s)."""
    import torch
    from chgnet.model import CHGNet

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CHGNet.load(verbose=False)


def static_energies(structures: Sequence, batch_size: int = 16, progress: Progress | None = None) -> np.ndarray:
    """CHGNet energy per atom (eV/atom) of each structure as given (no relaxation)."""
    model = load_chgnet()
    out = np.full(len(structures), np.nan)
    for i in range(0, len(structures), batch_size):
        chunk = list(structures[i: i + batch_size])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = model.predict_structure(chunk, task="e", batch_size=batch_size)
        if isinstance(preds, dict):  # CHGNet returns a bare dict for a one-structure list
            preds = [preds]
        out[i: i + len(chunk)] = [float(p["e"]) for p in preds]
        if progress:
            progress(min(i + batch_size, len(structures)), len(structures))
    return out


def relax(structure, steps: int = 200, fmax: float = 0.1):
    """CHGNet relaxation (FIRE, cell + positions); returns ``(structure, energy per atom)``.

    About 5 s for a 10-atom cell on one CPU core.
    """
    from chgnet.model import StructOptimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = StructOptimizer(model=load_chgnet())
        r = opt.relax(structure, fmax=fmax, steps=steps, verbose=False)
    final = r["final_structure"]
    return final, float(r["trajectory"].energies[-1]) / len(final)


#: Textbook ground-state structures of metals without an elemental MP-20 phase: (lattice, a[, c]) in A.
ELEMENT_PROTOTYPES = {"Al": ("fcc", 4.05), "Cr": ("bcc", 2.91), "V": ("bcc", 3.03), "Mo": ("bcc", 3.15),
                      "Pt": ("fcc", 3.92), "Th": ("fcc", 5.08), "Zn": ("hcp", 2.66, 4.95),
                      "Lu": ("hcp", 3.50, 5.55), "Os": ("hcp", 2.73, 4.32)}


@functools.cache
def _element_prototype(el: str):
    from pymatgen.core import Lattice, Structure

    kind, a, *c = ELEMENT_PROTOTYPES[el]
    if kind == "bcc":
        return Structure(Lattice.cubic(a), [el] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])
    if kind == "fcc":
        return Structure(Lattice.cubic(a), [el] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Structure(Lattice.hexagonal(a, c[0]), [el] * 2, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


class EnergyCache:
    """CHGNet static energies of reference structures keyed by material id, persisted as JSON."""

    def __init__(self, path=ENERGY_CACHE):
        self.path = path
        self.values: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def get_many(self, ids: Sequence[str], structures: Callable[[str], object],
                 progress: Progress | None = None) -> dict[str, float]:
        missing = [i for i in dict.fromkeys(ids) if i not in self.values]
        # Saved every 64 structures, so an interrupted run keeps what it computed.
        for k in range(0, len(missing), 64):
            chunk = missing[k: k + 64]
            e = static_energies([structures(i) for i in chunk])
            with _lock:
                self.values.update(zip(chunk, (float(x) for x in e), strict=True))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.values))
            if progress:
                progress(k + len(chunk), len(missing))
        return {i: self.values[i] for i in ids}


@dataclasses.dataclass(frozen=True)
class HullResult:
    e_above_hull: float  # eV/atom, NaN when no hull could be built
    formation_energy: float  # eV/atom vs elemental references, NaN without them
    n_references: int
    note: str = ""


class ReferencePhases:
    """MP-20 phases by chemical system, with their CHGNet static energies (computed once, cached)."""

    def __init__(self, ids: Sequence[str], formulas: Sequence[str], cif_of: Callable[[str], str],
                 cache: EnergyCache | None = None):
        from pymatgen.core import Composition

        self.ids = list(ids)
        self.comps = [Composition(f) for f in formulas]
        self.elsets = [frozenset(el.symbol for el in c.elements) for c in self.comps]
        self.cif_of = cif_of
        self.cache = cache or EnergyCache()

    @classmethod
    def from_mp20(cls) -> ReferencePhases:
        """All MP-20 structures on hand (train and held-out: they are all known phases)."""
        from battgai.materials.corpus import mp20_frame

        df = mp20_frame()
        cifs = df.set_index("material_id")["cif"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # noble gases have no electronegativity for formula sorting
            return cls(df.material_id.tolist(), df.formula.tolist(), cifs.__getitem__)

    def _structure(self, mid: str):
        from battgai.materials.validate import _parse_cif

        if mid.startswith("proto:"):
            return _element_prototype(mid.split(":")[1])
        return _parse_cif(self.cif_of(mid))

    def _add_missing_elements(self, elements: frozenset[str]) -> None:
        # MP-20 lacks elemental phases of a few metals (Al, Cr, V, Zn, Mo, ...): use their textbook
        # structure, CHGNet-relaxed, so those systems still get a hull.
        from pymatgen.core import Composition

        have = {next(iter(s)) for s in self.elsets if len(s) == 1}
        for el in sorted(elements - have):
            if el in ELEMENT_PROTOTYPES:
                mid = f"proto:{el}"
                if mid not in self.cache.values:
                    with _lock:
                        self.cache.values[mid] = relax(_element_prototype(el), steps=100)[1]
                self.ids.append(mid)
                self.comps.append(Composition(el))
                self.elsets.append(frozenset([el]))

    def in_system(self, elements: frozenset[str], exclude: str | None = None) -> list[int]:
        return [i for i, s in enumerate(self.elsets) if s <= elements and self.ids[i] != exclude]

    def hull(self, composition, energy_per_atom: float, exclude: str | None = None,
             progress: Progress | None = None) -> HullResult:
        """E_hull and formation energy of ``composition`` at ``energy_per_atom`` (CHGNet, eV/atom)."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        comp = Composition(composition)
        elements = frozenset(el.symbol for el in comp.elements)
        self._add_missing_elements(elements)
        idx = self.in_system(elements, exclude)
        energies = self.cache.get_many([self.ids[i] for i in idx], self._structure, progress)
        entries = [PDEntry(self.comps[i], energies[self.ids[i]] * self.comps[i].num_atoms) for i in idx]
        mu = {}
        for e in entries:
            if len(e.composition.elements) == 1:
                el = e.composition.elements[0].symbol
                mu[el] = min(mu.get(el, math.inf), e.energy_per_atom)
        missing = sorted(elements - set(mu))
        if missing:
            return HullResult(math.nan, math.nan, len(entries),
                              f"no elemental MP-20 phase for {', '.join(missing)}")
        e_form = energy_per_atom - sum(comp.get_atomic_fraction(el) * mu[el.symbol] for el in comp.elements)
        pd = PhaseDiagram(entries)
        target = PDEntry(comp, energy_per_atom * comp.num_atoms)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ehull = pd.get_e_above_hull(target, allow_negative=True)
        return HullResult(float(ehull), float(e_form), len(entries))


@dataclasses.dataclass(frozen=True)
class HullValidation:
    """CHGNet static E_hull / formation-energy proxy vs the DFT columns of held-out MP-20 structures."""

    n: int
    ehull_mae: float  # eV/atom
    stable_f1: float  # stable = E_hull < STABLE_EHULL, proxy vs DFT
    stable_precision: float
    stable_recall: float
    eform_mae: float  # eV/atom, vs MP formation_energy_per_atom (which includes MP2020 corrections)
    n_missing: int  # structures without elemental references


def validate_hull_proxy(n: int = 200, seed: int = 0, progress: Progress | None = None) -> HullValidation:
    """Proxy E_hull on ``n`` random held-out MP-20 (binary/ternary) structures vs their DFT ``e_above_hull``.

    The structure itself is one of the references (as in the DFT column, whose
    hull includes it); its energy and all references are static CHGNet energies.
    """
    from battgai.materials.corpus import is_heldout, mp20_frame

    df = mp20_frame().set_index("material_id")
    held = [i for i, r in df.iterrows()
            if r.mp20_split == "test" and is_heldout(i) and np.isfinite(r.e_above_hull)]
    rng = np.random.default_rng(seed)
    chosen = [held[i] for i in rng.permutation(len(held))[:n]]
    refs = ReferencePhases.from_mp20()
    # A generator, so CHGNet energies are computed one by one as the progress bar advances.
    items = (
        (refs._structure(mid).composition, refs.cache.get_many([mid], refs._structure)[mid],
         float(df.at[mid, "e_above_hull"]), float(df.at[mid, "formation_energy"]))
        for mid in chosen
    )
    return _score_against_dft(refs, items, len(chosen), progress)


def validate_hull_proxy_mpts(n_per_class: int = 100, seed: int = 0, max_atoms: int = 30,
                             progress: Progress | None = None) -> HullValidation:
    """Proxy E_hull on MPTS-52 test structures (never trained on), stratified stable / unstable.

    MP-20 only holds structures within 0.08 eV/atom of the hull, so the F1 of
    "stable" is meaningless there; MPTS-52 (later MP entries) has 12 % above
    0.1 eV/atom. ``n_per_class`` structures with DFT E_hull < 0.1 and as many
    above are drawn (``seed``, <= ``max_atoms`` atoms). A structure below the
    MP-20 reference hull gets E_hull 0 (it would be on the hull once included,
    as in the DFT column).
    """
    import pandas as pd

    from battgai import data
    from battgai.materials.validate import _parse_cif

    path = data.data_dir() / "materials" / "mpts_52" / "test.csv.gz"
    if not path.exists():
        raise data.DataNotFound(f"MPTS-52 not found at {path}")
    df = pd.read_csv(path, usecols=["material_id", "energy_above_hull", "formation_energy_per_atom", "cif"])
    rng = np.random.default_rng(seed)
    chosen = []
    for stable in (True, False):
        part = df[(df.energy_above_hull < STABLE_EHULL) == stable]
        picked = 0
        for i in rng.permutation(len(part)):
            s = _parse_cif(part.cif.iloc[i])
            if len(s) <= max_atoms:
                chosen.append((part.iloc[i], s))
                picked += 1
                if picked == n_per_class:
                    break
    refs = ReferencePhases.from_mp20()
    energies = static_energies([s for _, s in chosen])
    items = (
        (s.composition, float(e), float(row.energy_above_hull), float(row.formation_energy_per_atom))
        for (row, s), e in zip(chosen, energies, strict=True)
    )
    return _score_against_dft(refs, items, len(chosen), progress)


def _score_against_dft(refs: ReferencePhases, items, n: int, progress: Progress | None) -> HullValidation:
    """Proxy E_hull and formation energy of ``items`` = (composition, CHGNet energy per atom,
    DFT E_hull, DFT formation energy) against the DFT columns."""
    pred, true, ef_pred, ef_true, missing = [], [], [], [], 0
    for k, (composition, energy, dft_ehull, dft_eform) in enumerate(items):
        h = refs.hull(composition, energy)
        if progress:
            progress(k + 1, n)
        if not np.isfinite(h.e_above_hull):
            missing += 1
            continue
        pred.append(max(h.e_above_hull, 0.0))
        true.append(dft_ehull)
        ef_pred.append(h.formation_energy)
        ef_true.append(dft_eform)
    return _hull_scores(np.array(pred), np.array(true), np.array(ef_pred), np.array(ef_true), missing)


def _hull_scores(pred, true, ef_pred, ef_true, missing: int) -> HullValidation:
    ps, ts = pred < STABLE_EHULL, true < STABLE_EHULL
    tp = float((ps & ts).sum())
    precision = tp / max(float(ps.sum()), 1.0)
    recall = tp / max(float(ts.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return HullValidation(len(pred), float(np.abs(pred - true).mean()), f1, precision, recall,
                          float(np.abs(ef_pred - ef_true).mean()), missing)
