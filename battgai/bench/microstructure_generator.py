"""A generator holding every statistic at once (issue 23, item 5).

``python -m battgai.bench microstructure --part generator``.

For the TauFactor NMC volume and, as a second material, the MATBOX NMC volume, each cut in two
along z (:func:`battgai.microstructure.io.real_volume`): statistics of the 64^3 crops of the
held-out part (:mod:`battgai.microstructure.generation.genfit`) against

- the level cut with the settings of the one-statistic-at-a-time fit (``PREVIOUS``, the card
  before the joint fit; on MATBOX the same settings with MATBOX's own field correlations);
- the level cut fitted jointly on the training part (TauFactor: the bundled card; MATBOX: fitted
  here on MATBOX's training part);
- the bundled SliceGAN (TauFactor only: it was trained on TauFactor);
- the floor: the training part's crops (means), and one real crop against another (median of
  every training crop x held-out crop pair).

Generated sets: 2 samples of 128^3 at the held-out porosity, 8 crops each.

``--part generator-reference`` (:func:`reference_report`) measures the generator with the field's
reference codes (:mod:`battgai.microstructure.analysis.reference`: PoreSpy, TauFactor) instead:
samples generated at 64^3 and at 128^3 directly against held-out real crops of the same size, the
own code's errors and its agreement with the reference codes on the real crops side by side.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from battgai.microstructure import io
from battgai.microstructure.generation import generator, genfit

TARGET = 0.10
TARGET_STATS = ("porosity", "surface area", "correlation length", "tortuosity")
#: Settings of the one-statistic-at-a-time fit (card of 2026-11-25), the "before" row.
PREVIOUS = {"smooth_nmc": 1.0, "smooth": 0.0, "pore_bias": -4.0, "nmc_scale": 1.0}
MATERIALS = {"taufactor": "TauFactor NMC", "matbox": "MATBOX NMC (second material)"}
SAMPLES = 2


def _per_crop(volume: np.ndarray) -> list[dict[str, float]]:
    return [genfit.statistics([c]) for c in genfit.crops(volume)]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def rows(log=print) -> list[dict]:
    """One dict per (material, set): name, relative errors vs the held-out means, seconds per 128^3."""
    from battgai.microstructure.generation import slicegan

    out = []
    for key, material in MATERIALS.items():
        train, test = io.real_volume("train", key), io.real_volume("test", key)
        log(f"{material}: real crops")
        real_train, real_test = _per_crop(train), _per_crop(test)
        heldout = _mean(real_test)
        pairs = [genfit.relative_errors(a, b) for a, b in itertools.product(real_train, real_test)]
        out.append({"material": material, "set": "real training part (means of its crops)",
                    "errors": genfit.relative_errors(_mean(real_train), heldout), "seconds": None})
        out.append({"material": material, "set": "one real crop vs another (median over pairs)",
                    "errors": {k: float(np.median([p[k] for p in pairs])) for k in pairs[0]}, "seconds": None})
        models = {"level cut, previous one-statistic fit settings": genfit.base_model(train, **PREVIOUS)}
        if key == "taufactor":
            models["level cut, joint fit (bundled card)"] = generator.load()
        else:
            log(f"{material}: joint fit on the training part")
            models["level cut, joint fit on this material's training part"] = genfit.fit(train, log=lambda _: None)
        if key == "taufactor":
            models["SliceGAN (bundled)"] = slicegan.load()
        for name, model in models.items():
            log(f"{material}: {name}")
            sample = slicegan.sample if name.startswith("SliceGAN") else generator.sample
            t0 = time.perf_counter()
            vols = [sample(model, heldout["porosity"], (128,) * 3, seed=s) for s in range(SAMPLES)]
            seconds = (time.perf_counter() - t0) / SAMPLES
            stats = genfit.statistics([c for v in vols for c in genfit.crops(v)])
            out.append({"material": material, "set": name, "errors": genfit.relative_errors(stats, heldout),
                        "seconds": seconds, "config": getattr(model, "config", None)})
    return out


def markdown(table: list[dict]) -> str:
    cols = genfit.STATISTICS
    lines = ["### Generator: every statistic at once (64^3 crops, held-out part)", "",
             "Relative errors of the crop means against the held-out crops' means (pore phase unless named). "
             "Split along z: TauFactor z < 128 / z >= 128 (32 + 32 crops), MATBOX z < 123 / z >= 123 (16 + 32 "
             "crops). Generated: 2 samples of 128^3 at the held-out porosity, 8 crops each. Correlation length: r "
             "where (S2 - p^2) / (p - p^2) first drops below 1/e, interpolated. Target: the first four within 10 % "
             "at once, <= 5 s per 128^3; the NMC columns are reported, not targets.", "",
             "| material | set | " + " | ".join(cols) + " | all 4 within 10 % | s per 128^3 |",
             "|---|---|" + "---|" * (len(cols) + 2)]
    misses = []
    for r in table:
        e = r["errors"]
        ok = all(e[k] <= TARGET for k in TARGET_STATS)
        generated = r["seconds"] is not None
        cells = " | ".join(f"{100 * e[k]:.1f} %" for k in cols)
        if generated:
            lines.append(f"| {r['material']} | {r['set']} | {cells} | {'met' if ok else '**missed**'} | "
                         f"{r['seconds']:.2f} |")
        else:
            lines.append(f"| {r['material']} | {r['set']} | {cells} | {'yes' if ok else 'no'} (floor) | |")
        if generated and "joint" in r["set"]:
            misses += [f"{r['material']}: {k} {100 * e[k]:.1f} %" for k in TARGET_STATS if e[k] > TARGET]
            if r["seconds"] > 5:
                misses.append(f"{r['material']}: {r['seconds']:.2f} s per 128^3")
    lines.append("")
    for r in table:
        if r.get("config") is not None and "joint" in r["set"]:
            c = r["config"]
            lines.append(f"- {r['material']} joint fit: nmc_scale {c.nmc_scale}, smooth_nmc {c.smooth_nmc}, "
                         f"pore_bias {c.pore_bias}.")
    lines.append("- Joint fit targets: " + ("all met." if not misses else "missed: " + "; ".join(misses) + "."))
    return "\n".join(lines)


def report() -> str:
    return markdown(rows())


#: Settings fitted on each material's training part against the reference-measured statistics.
#: TauFactor: ``genfit.fit_reference(io.real_volume("train", "taufactor"))`` gave nmc_scale 1.3 and no
#: smoothing or bias (largest training error 7.8 %) but, tortuosity not being fitted, 32-38 % too high a
#: tortuosity on the held-out crops; among four settings checked on 6 training crops with tortuosity,
#: these held all four statistics (surface area -3.4 %, correlation length -6.6 %, tortuosity +7.1 %).
#: MATBOX: the same search stopped at nmc_scale 1.6, smooth_nmc 1.0 (14.6 %, a local optimum of the
#: coordinate sweeps); these settings come from ``fit_reference`` on the grid nmc_scale (1.3,),
#: smooth_nmc (2.0,), smooth (0.0, 1.0), pore_bias (0.0,) (4.1 %).
REFERENCE_FIT = {"taufactor": {"nmc_scale": 1.6, "smooth_nmc": 0.0, "smooth": 0.0, "pore_bias": -3.0},
                 "matbox": {"nmc_scale": 1.3, "smooth_nmc": 2.0, "smooth": 1.0, "pore_bias": 0.0}}
#: Volumes per (size, set): a TauFactor solve costs ~5-9 s at 64^3 and ~35 s at 128^3 on one core;
#: the block runs in about 6 minutes.
REFERENCE_COUNTS = {64: {"real": 12, "generated": 6}, 128: {"real": 4, "generated": 2}}
REFERENCE_STATS = ("porosity", "surface area", "correlation length", "tortuosity")


def _own_statistics(volumes: list[np.ndarray]) -> dict[str, float]:
    """The same statistics by battgai's own code (:mod:`battgai.microstructure.analysis.metrics`)."""
    from battgai.microstructure.analysis import metrics

    side = min(volumes[0].shape)
    return {"porosity": float(np.mean([metrics.volume_fraction(v, 0) for v in volumes])),
            "surface area": float(np.mean([metrics.specific_surface_area(v, 0) for v in volumes])),
            "correlation length": float(np.mean([metrics.correlation_length(v, 0, side // 2) for v in volumes]))}


def _reference(volume: np.ndarray) -> dict[str, float]:
    """Reference statistics of one volume (:mod:`battgai.microstructure.analysis.reference`), pore phase."""
    from battgai.microstructure.analysis import reference

    return {"porosity": reference.porosity(volume), "surface area": reference.surface_area(volume),
            "correlation length": reference.correlation_length(volume), "tortuosity": reference.tortuosity(volume)}


def _summary(per_volume: list[dict[str, float]]) -> dict:
    """Means of the reference statistics, tortuosity as the median (with its :class:`TortuositySummary`)."""
    from battgai.microstructure.analysis import reference

    tau = reference.summarise_tortuosity([p["tortuosity"] for p in per_volume])
    means = {k: float(np.mean([p[k] for p in per_volume])) for k in REFERENCE_STATS if k != "tortuosity"}
    return {"reference": {**means, "tortuosity": tau.median}, "tau": tau}


def _measure(volumes: list[np.ndarray]) -> tuple[dict, list[dict[str, float]]]:
    """Summary of the reference statistics plus the own code's, and the per-volume reference values."""
    per_volume = [_reference(v) for v in volumes]
    return {**_summary(per_volume), "own": _own_statistics(volumes)}, per_volume


def reference_rows(log=print) -> list[dict]:
    """One dict per (material, side): real held-out crops, their two halves (floor), generated samples."""
    out = []
    for key, material in MATERIALS.items():
        train, test = io.real_volume("train", key), io.real_volume("test", key)
        model = genfit.base_model(train, **REFERENCE_FIT[key])
        for side, counts in REFERENCE_COUNTS.items():
            every = genfit.crops(test, side)
            real = every[::max(1, len(every) // counts["real"])][:counts["real"]]
            log(f"{material} {side}^3: {len(real)} real crops")
            measured_real, per_crop = _measure(real)
            halves = [_summary(per_crop[i::2])["reference"] for i in (0, 1)]
            porosity = measured_real["reference"]["porosity"]
            log(f"{material} {side}^3: {counts['generated']} generated")
            t0 = time.perf_counter()
            generated = [generator.sample(model, porosity, (side,) * 3, seed=s) for s in range(counts["generated"])]
            seconds = (time.perf_counter() - t0) / counts["generated"]
            out.append({"material": material, "side": side, "real": measured_real,
                        "generated": _measure(generated)[0], "floor": genfit.relative_errors(halves[0], halves[1]),
                        "seconds": seconds, "n": (len(real), len(generated)), "config": model.config})
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def reference_markdown(table: list[dict]) -> str:
    """The side-by-side table: reference-measured errors, own-code errors, agreement, floor; misses marked."""
    from battgai.microstructure.analysis import reference

    lines = ["### Generator under the field's reference codes (PoreSpy, TauFactor), at 64^3 and 128^3", "",
             "Pore phase. Definitions: " + "; ".join(f"{k}: `{v}`" for k, v in reference.DEFINITIONS.items())
             + ". Own code: skimage marching cubes at 0.5 without the blur, own FFT S2 rounded to whole "
             "voxels (`battgai.microstructure.analysis.metrics`); its tortuosity is TauFactor too, so it is "
             "not listed. Tortuosity of a set: median over its volumes (inf where a crop does not percolate) "
             "with the percolating share. Real: held-out crops (every n-th) at that size; generated: samples "
             "of that size at the real crops' mean porosity, seeds 0..n-1. Error: |generated / real - 1|; "
             "floor: one half of the real crops against the other. Target: the four reference errors "
             f"within {_pct(TARGET)}.", "",
             "| material | size | n real / gen | statistic | real (reference) | error vs real (reference) | "
             "error vs real (own code) | own vs reference on real | real-vs-real floor | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    misses = []
    for r in table:
        ref_err = genfit.relative_errors(r["generated"]["reference"], r["real"]["reference"])
        own_err = genfit.relative_errors(r["generated"]["own"], r["real"]["own"])
        agree = genfit.relative_errors(r["real"]["own"], r["real"]["reference"])
        for k in REFERENCE_STATS:
            real = r["real"]["reference"][k]
            cell = f"{real:.4g}"
            if k == "tortuosity":
                cell += f" (percolating {_pct(r['real']['tau'].percolating_share)}; generated " \
                        f"{r['generated']['reference'][k]:.4g}, {_pct(r['generated']['tau'].percolating_share)})"
            ok = ref_err[k] <= TARGET
            if not ok:
                misses.append(f"{r['material']} {r['side']}^3 {k} {_pct(ref_err[k])}")
            lines.append(f"| {r['material']} | {r['side']}^3 | {r['n'][0]} / {r['n'][1]} | {k} | {cell} | "
                         f"{_pct(ref_err[k])} | {_pct(own_err[k]) if k in own_err else '-'} | "
                         f"{_pct(agree[k]) if k in agree else 'same solver'} | {_pct(r['floor'][k])} | "
                         f"{'met' if ok else '**missed**'} |")
    lines.append("")
    for r in table:
        if r["side"] == min(REFERENCE_COUNTS):
            c = r["config"]
            lines.append(f"- {r['material']} settings (chosen on the training part, see `REFERENCE_FIT`): "
                         f"nmc_scale {c.nmc_scale}, smooth_nmc {c.smooth_nmc}, smooth {c.smooth}, pore_bias "
                         f"{c.pore_bias}; {r['seconds']:.2f} s per {r['side']}^3 sample.")
    lines.append("- Targets: " + ("all met." if not misses else "missed: " + "; ".join(misses) + "."))
    lines.append("- Reproduce: `nice -n 15 python -m battgai.bench microstructure --part generator-reference`; "
                 "settings: `genfit.fit_reference` on each training part (coordinate search, ~5 CPU minutes per "
                 "material; how each was found is in `REFERENCE_FIT`'s comment).")
    return "\n".join(lines)


def reference_report() -> str:
    return reference_markdown(reference_rows())
