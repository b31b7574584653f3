"""How crystals are judged, shared by the bench and the campaigns: stable, suspect, S.U.N., relaxations.

Stable means an E_hull below :data:`~battgai.materials.checks.stability.STABLE_EHULL` (0.1 eV/atom, the
MatterGen / DiffCSP threshold) against the MP-20 reference phases. A crystal more than
:data:`SUSPECT_BELOW_HULL` *below* that hull is suspect, never a win: of 100 relaxed crystals of
the bundled generator 14 landed there (AcGaPt -0.55, HgSe2 -0.29, ReF6 -0.20 eV/atom), SevenNet-0
agreed on 13 of 13 (both learnt MPtrj) and MPTS-52's phases changed no hull, so they are far likelier
holes of the potential or missing reference phases than discoveries. Suspect crystals are shown as
such and never counted as stable or S.U.N.
"""

from __future__ import annotations

import math
import time

import numpy as np

from battgai.materials.checks import validate

#: eV/atom below the known hull beyond which a crystal is suspect rather than stable.
SUSPECT_BELOW_HULL = 0.05


def is_suspect(e_above_hull: float) -> bool:
    """True when ``e_above_hull`` lies more than :data:`SUSPECT_BELOW_HULL` below the known hull."""
    return bool(np.isfinite(e_above_hull) and e_above_hull < -SUSPECT_BELOW_HULL)


def is_stable(e_above_hull: float) -> bool:
    """Below the stability threshold and not suspect (NaN, no hull: not stable).

    Examples
    --------
    >>> is_stable(0.05), is_stable(-0.03), is_stable(-0.2), is_stable(float("nan"))
    (True, True, False, False)
    """
    from battgai.materials.checks.stability import STABLE_EHULL

    return bool(np.isfinite(e_above_hull) and -SUSPECT_BELOW_HULL <= e_above_hull < STABLE_EHULL)


def verdict(e_above_hull: float) -> str:
    """One word for a table: "stable", "suspect", "unstable" or "no hull"."""
    if not np.isfinite(e_above_hull):
        return "no hull"
    if is_suspect(e_above_hull):
        return "suspect"
    return "stable" if is_stable(e_above_hull) else "unstable"


def rate(flags) -> float:
    """Share of true values (NaN for none)."""
    flags = list(flags)
    return sum(map(bool, flags)) / len(flags) if flags else math.nan


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


def by_index(sc: dict) -> tuple[dict, dict]:
    """:func:`score`'s uniqueness and novelty masks keyed by structure index, as :func:`sun` takes them."""
    ok = sc["_ok_index"]
    return dict(zip(ok, sc["_unique_mask"], strict=True)), dict(zip(ok, sc["_novel_mask"], strict=True))


#: Wall-clock limit of one benchmark relaxation (s). A cell that collapses under the potential makes CHGNet's
#: neighbour lists explode (one took 19 GB and minutes per step); it is stopped and counted as failed.
RELAX_TIMEOUT = 90


class _RelaxTimeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _RelaxTimeout


def relax_all(structures, steps: int = 100, progress=None) -> list:
    """CHGNet relaxation of each structure: ``(relaxed structure, energy per atom)`` or None when it fails
    or runs past :data:`RELAX_TIMEOUT` seconds."""
    import signal

    from battgai.materials.checks.stability import relax

    out = []
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    try:
        for k, s in enumerate(structures):
            signal.alarm(RELAX_TIMEOUT)
            try:
                r, e = relax(s, steps=steps)
                out.append((r, e) if np.isfinite(e) and validate.structural_valid(r) else None)
            except Exception:  # a relaxation that blows up or times out counts as unstable
                out.append(None)
            finally:
                signal.alarm(0)
            if progress:
                progress(k + 1, len(structures))
    finally:
        signal.signal(signal.SIGALRM, previous)
    return out


def sun(structures, idx, uniq_of, novel_of, refs, known, relax_steps: int = 100) -> dict[str, float]:
    """S.U.N. over subsample ``idx``: stable (CHGNet E_hull < 0.1 eV/atom, not suspect), unique, novel.

    Given twice: on static energies of the structures as generated, and after a
    CHGNet relaxation (``relax_steps`` FIRE steps, fmax 0.1 eV/A), where novelty is
    judged on the relaxed structure and uniqueness also within the relaxed subsample.
    """
    from battgai.materials.checks.stability import static_energies

    sub = [structures[i] for i in idx]
    have = [k for k, s in enumerate(sub) if s is not None and validate.structural_valid(s)]
    e = static_energies([sub[k] for k in have]) if have else []
    ehull, eform = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    for k, en in zip(have, e, strict=True):
        h = refs.hull(sub[k].composition, float(en))
        ehull[k], eform[k] = h.e_above_hull, h.formation_energy
    stable = np.array([is_stable(e) for e in ehull], dtype=bool)
    sun_mask = [bool(stable[k] and uniq_of.get(i, False) and novel_of.get(i, False)) for k, i in enumerate(idx)]
    out = {"stable": float(stable.mean()), "sun": float(np.mean(sun_mask)),
           "suspect": float(np.mean([is_suspect(e) for e in ehull])),
           "ehull_median": float(np.nanmedian(ehull)) if np.isfinite(ehull).any() else math.nan,
           "no_reference": float(np.mean(~np.isfinite(ehull))), "_eform": eform.tolist(),  # incl. invalid
           "_ehull": ehull.tolist()}
    if relax_steps:
        t0 = time.time()
        relaxed = relax_all([sub[k] for k in have], relax_steps)
        eh_r, ef_r = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
        done = {k: r for k, r in zip(have, relaxed, strict=True) if r is not None}
        for k, (st, en) in done.items():
            h = refs.hull(st.composition, en)
            eh_r[k], ef_r[k] = h.e_above_hull, h.formation_energy
        stable_r = np.array([is_stable(e) for e in eh_r], dtype=bool)
        keys = sorted(done)
        uniq_r = dict(zip(keys, validate.unique_mask([done[k][0] for k in keys]), strict=True))
        sun_r = [bool(stable_r[k] and uniq_r[k] and uniq_of.get(idx[k], False)
                      and validate.is_novel(done[k][0], known)) for k in keys]
        out.update({"stable_relaxed": float(stable_r.mean()), "sun_relaxed": sum(sun_r) / len(idx),
                    "suspect_relaxed": float(np.mean([is_suspect(e) for e in eh_r])),
                    "ehull_median_relaxed": float(np.nanmedian(eh_r)) if np.isfinite(eh_r).any() else math.nan,
                    "relax_failed": (len(have) - len(done)) / len(idx), "relax_seconds": time.time() - t0,
                    "_eform_relaxed": ef_r.tolist(), "_ehull_relaxed": eh_r.tolist()})
    return out
