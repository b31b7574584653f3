"""SOH for a researcher's own cells: one code path for the page, the CLI and the bench.

The researcher marks a few cells as labelled (a full discharge gives their capacity). The other
cells get an SOH estimate with an uncertainty for every cycle, from the window of each curve
only. Side by side, the same labelled cells feed the simple pipelines (source only, labelled
cells only, labelled cells + jitter / mixup, with ridge and gradient boosting) and, optionally,
a curve generator trained on the labelled cells' curves; where the file also holds the other
cells' capacities they score every pipeline (leave-cells-out: scored cells are never trained on).
The estimates come from the pipeline with the lowest error on cells the run holds out of what it
has, never the scored ones (:mod:`battgai.health.estimation.pick`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from battgai.core.provenance import Provenance
from battgai.core.runs import Run
from battgai.health.estimation.pick import LABELLED_GROUP, Pick, pick
from battgai.health.estimation.transfer import (
    MAX_REF_SPREAD,
    MIN_LABELLED_CYCLES,
    WINDOW_FRACTION,
    Frame,
    TransferError,
    TransferModel,
    features,
    first_capacity,
    fit_frame,
    outside,
    reaches_window,
    relative,
)
from battgai.health.preprocess import CurveSet, resample
from battgai.health.schema import FULL_SOURCES, CyclingData, score_basis

#: Points of the fine voltage grid an upload is resampled on (its own range, not NASA's).
N_FINE = 151
#: A NASA cell whose mean discharge current spans more than this (A) changes protocol mid-life
#: (B0038-B0040): it is not one lab's condition and is left out of the source.
MIXED_CURRENT_A = 0.5
#: Share of held-out errors the band of two (calibrated) sigmas is meant to hold.
BAND_COVERAGE = 0.95
#: Labelled-cell choices per source lab when calibrating the band (bounds its time: one fit each).
CALIBRATION_RUNS_PER_LAB = 4
TRANSFER = "transfer (source + labelled, Daume ridge)"
TRANSFER_GEN = "transfer + cVAE curves of the labelled cells"


def fine_grid(data: CyclingData) -> np.ndarray:
    """A voltage grid over the loaded range of ``data`` itself (any chemistry, any cut-off).

    The ends are percentiles of the per-cycle loaded maxima and minima, so one stray sample (a
    dip far below cut-off) does not stretch the grid for every cycle.
    """
    s = data.samples
    loaded = s[s["current_a"] < -0.05 * data.nominal_ah]
    if len(loaded) < 3:
        raise TransferError("No sample discharges at more than C/20: there are no discharge curves to use.")
    per = loaded.groupby(["cell_id", "cycle"])["voltage_v"].agg(["max", "min"])
    hi, lo = float(np.percentile(per["max"], 95)), float(np.percentile(per["min"], 5))
    pad = 0.02 * (hi - lo)
    return np.linspace(hi + pad, lo - pad, N_FINE)


def curves_of(data: CyclingData) -> CurveSet:
    """Every discharge cycle of ``data`` resampled on its own voltage range."""
    return resample(data, fine_grid(data))


def nasa_source_labs(curves: CurveSet) -> dict[str, CurveSet]:
    """NASA cells grouped by (ambient temperature, discharge current) as "labs", mixed-current cells left out."""
    labs: dict[str, list[str]] = {}
    for cell in np.unique(curves.cell_id):
        m = curves.cell_id == cell
        if np.ptp(curves.current_a[m]) > MIXED_CURRENT_A:
            continue
        key = f"{np.median(curves.temperature_c[m]):.0f} C / {np.median(curves.current_a[m]):.0f} A"
        labs.setdefault(key, []).append(str(cell))
    return {k: curves.subset(np.isin(curves.cell_id, v)) for k, v in sorted(labs.items())}


def check_labelled(curves: CurveSet, labelled: list[str]) -> list[str]:
    """Refuse what the transfer cannot use (:class:`TransferError`); return warnings for the rest."""
    cells = set(map(str, np.unique(curves.cell_id)))
    if not labelled:
        raise TransferError("Mark at least one cell as labelled: a cell with full discharges, whose capacity the "
                            "file gives or the current counts. Without one the estimates cannot be tied to your "
                            "cells' capacity.")
    unknown = sorted(set(labelled) - cells)
    if unknown:
        raise TransferError(f"Labelled cell(s) not in the data: {', '.join(unknown)}.")
    lab = np.isin(curves.cell_id, labelled)
    cap = curves.soh[lab] * curves.nominal_ah
    if not np.isfinite(cap).all() or (cap <= 0).any():
        raise TransferError("Some labelled cycles have no capacity (empty or zero); label only cells with full "
                            "discharges.")
    if lab.sum() < MIN_LABELLED_CYCLES or len(np.unique(np.round(cap, 4))) < 3:
        raise TransferError(
            f"The labelled cells hold {int(lab.sum())} cycle(s) with {len(np.unique(np.round(cap, 4)))} distinct "
            f"capacities; at least {MIN_LABELLED_CYCLES} cycles and 3 capacities are needed to fit how the window "
            "changes with capacity. Label a cell with more of its life, or more cells.")
    firsts = {c: first_capacity(curves, c) for c in labelled}
    med = np.median(list(firsts.values()))
    warnings = []
    if len(firsts) > 1:
        odd = [f"{c} ({v:.3g} Ah)" for c, v in firsts.items() if abs(v / med - 1) > MAX_REF_SPREAD]
        if odd:
            raise TransferError(
                f"Labelled cell(s) {', '.join(odd)} start more than {MAX_REF_SPREAD:.0%} away from the other labelled "
                f"cells' median first capacity ({med:.3g} Ah): a different cell type, unit or file? Unmark them.")
    ratio = med / curves.nominal_ah
    if not 0.5 <= ratio <= 1.5:
        warnings.append(f"The labelled cells start at {ratio:.0%} of the nominal capacity ({curves.nominal_ah:g} Ah): "
                        "check the nominal capacity (SOH is reported against it).")
    if len(cells - set(labelled)) == 0:
        warnings.append("Every cell is labelled: there is no other cell to estimate or to score on.")
    return warnings


def full_labels(curves: CurveSet, labelled: list[str]) -> tuple[CurveSet, list[str]]:
    """``curves`` without the labelled cells' partial discharges, and a warning when any was left out.

    A coulomb count that stops above the cut-off is not the cell's capacity, so it cannot teach
    the estimator one. Raises :class:`TransferError` for a labelled cell with partial discharges only.
    """
    mine = np.isin(curves.cell_id, labelled)
    part = mine & ~np.isin(curves.capacity_source, FULL_SOURCES)
    if not part.any():
        return curves, []
    only = sorted(set(curves.cell_id[part]) - set(curves.cell_id[mine & ~part]))
    if only:
        raise TransferError(f"Labelled cell(s) {', '.join(only)} hold partial discharges only (counted current "
                            "that stops above the cut-off): their counts are not their capacity. Label a cell with "
                            "full discharges, or state the cut-off voltage.")
    return curves.subset(~part), [f"{int(part.sum())} partial discharge(s) of the labelled cells left out of "
                                  "training: a count that stops above the cut-off is not the cell's capacity."]


def _plain(kind: str, seed: int):
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Ridge

    if kind == "ridge":
        return Ridge(alpha=0.01)
    return GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                                     random_state=seed)


def _xyc(rel: CurveSet, window: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return features(rel, window), rel.soh, rel.cell_id


def adapted_curves(target: CurveSet, n: int, seed: int, steps: int) -> CurveSet:
    """Curves from a cVAE trained on the labelled cells' relative curves, SOH spread beyond their range.

    The generator is conditioned on the lab (it sees only this lab's curves, on this lab's
    relative grid), and asked for SOH uniform from 0.1 below to 0.02 above the labelled range,
    at the labelled cells' C-rates.
    """
    from battgai.health.generation.cvae_train import TrainConfig, train_cvae
    from battgai.health.generation.sample import sample

    gen = train_cvae(target, train=TrainConfig(steps=steps, seed=seed))
    rng = np.random.default_rng(seed + 7919)
    idx = rng.integers(0, len(target), n)
    lo, hi = max(0.3, target.soh.min() - 0.1), min(1.3, target.soh.max() + 0.02)
    cond = np.column_stack([rng.uniform(lo, hi, n), target.temperature_c[idx], target.current_a[idx]])
    syn = sample(gen, cond, seed=seed, nominal_ah=1.0)
    syn.grid = target.grid
    syn.cell_id = np.array(["synthetic"] * n)
    return syn


def fit_pipeline(name: str, source: CurveSet | None, target: CurveSet, window: tuple[float, float], seed: int = 0,
                 generator_steps: int = 0) -> object:
    """One pipeline of :func:`pipelines`, by name, fitted on relative curve sets.

    The band is calibrated by refitting the very pipeline a run uses on held-out cells, so each
    recipe lives here once.
    """
    from battgai.health.estimation.experiment import jitter, mixup

    xt, yt, ct = _xyc(target, window)
    src = _xyc(source, window) if source is not None and len(source) else None
    if name == TRANSFER:
        return TransferModel(seed=seed).fit(src, (xt, yt, ct))
    if name == TRANSFER_GEN:
        syn = adapted_curves(target, len(target), seed, generator_steps)
        return TransferModel(seed=seed).fit(src, (np.vstack([xt, features(syn, window)]), np.r_[yt, syn.soh],
                                                  np.r_[ct, syn.cell_id]))
    kind = name[name.rindex("(") + 1:-1]
    if name == "source only (ridge)":
        if src is None:
            raise TransferError("The source-only pipeline needs source curves.")
        return _plain(kind, seed).fit(src[0], src[1])
    if name.startswith("labelled only"):
        return _plain(kind, seed).fit(xt, yt)
    augment = {"jitter": jitter, "mixup": mixup}[name.split()[2]]
    both = CurveSet.concat([target, augment(target, len(target), np.random.default_rng(seed))])
    return _plain(kind, seed).fit(features(both, window), both.soh)


def pipelines(source: CurveSet | None, target: CurveSet, window: tuple[float, float], seed: int = 0,
              generator_steps: int = 0) -> dict[str, object]:
    """Every pipeline fitted on relative curves: name -> object with ``predict(x) -> relative SOH``.

    ``source`` and ``target`` are relative curve sets (:func:`~battgai.health.estimation.transfer.relative`);
    ``target`` holds the labelled cells only.
    """
    has_source = source is not None and len(source) > 0
    names = ["source only (ridge)", TRANSFER] if has_source else []
    names += [f"labelled {arm} ({kind})" for kind in ("ridge", "gbm") for arm in ("only", "+ jitter", "+ mixup")]
    if generator_steps and has_source:
        names.append(TRANSFER_GEN)
    return {n: fit_pipeline(n, source, target, window, seed, generator_steps) for n in names}


def mean_sigma(model: object, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted pipeline's estimate and its (uncalibrated) 1-sigma; a pipeline without one gets sigma 1.

    With sigma 1 the calibrated band is the conformal half-width of the pipeline's own errors.
    """
    p = model.predict(x)
    return (p[0], p[1]) if isinstance(p, tuple) else (p, np.ones(len(x)))


@dataclasses.dataclass
class TransferResult:
    """Estimates for every unlabelled cycle, and each pipeline's score where the file holds capacities."""

    estimates: pd.DataFrame
    scores: pd.DataFrame  # pipeline, rmse, bias (SOH points), curves scored
    frame: Frame
    warnings: list[str]
    provenance: Provenance
    pick: Pick  # the pipeline the estimates come from, and the held-out numbers it was picked on

    def csv(self) -> bytes:
        return self.estimates.to_csv(index=False, float_format="%.5g").encode()

    def scores_csv(self) -> bytes:
        return self.scores.to_csv(index=False, float_format="%.4g").encode()

    def save(self, run: Run) -> None:
        """Into a run of the run store: the two CSVs a user downloads, the provenance, and the state to reopen it."""
        run.write("soh_estimates.csv", self.csv())
        run.write("pipelines.csv", self.scores_csv())
        run.set(provenance=self.provenance)
        # Tables as column arrays: the store keeps no pickle, and reopening shows the numbers unrounded.
        run.save_state({"estimates": {c: self.estimates[c].to_numpy() for c in self.estimates},
                        "scores": {c: self.scores[c].to_numpy() for c in self.scores},
                        "frame": self.frame, "warnings": list(self.warnings), "provenance": self.provenance,
                        "pick": self.pick})

    @classmethod
    def from_state(cls, state: dict) -> TransferResult:
        """The result a ``health.transfer`` run saved with :meth:`save` (its ``RunRecord.state()``)."""
        # A stored run without a pick used the transfer, unchecked.
        chosen = state.get("pick") or Pick(state["provenance"].model, {}, "stored without a pick", 0)
        return cls(pd.DataFrame(state["estimates"]), pd.DataFrame(state["scores"]), state["frame"],
                   state["warnings"], state["provenance"], chosen)


def _lab_relative(lab: CurveSet, labelled: list[str], window: tuple[float, float]) -> CurveSet:
    frame = fit_frame(lab, labelled, window)
    return relative(lab.subset(reaches_window(lab, frame)), frame)


def _source_relative(labs: dict[str, CurveSet], window: tuple[float, float]) -> dict[str, CurveSet]:
    """Each source lab on its own frame (every one of its cells sets ``c_ref``)."""
    return {k: _lab_relative(v, list(map(str, np.unique(v.cell_id))), window) for k, v in labs.items()}


Fit = Callable[[CurveSet | None, CurveSet], object]


def held_out_errors(labs: dict[str, CurveSet], target: CurveSet, window: tuple[float, float],
                    fits: dict[str, Fit], rel: dict[str, CurveSet] | None = None
                    ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Each pipeline's errors and sigma on cells it never saw, per group, from what a run has.

    ``fits`` maps a pipeline's name to ``fit(source, labelled)``, which refits it (relative curve
    sets in, a fitted pipeline out). Each source lab with two or more cells plays the
    researcher's lab in turn (leave-source-lab-out): one of its cells labelled (up to
    :data:`CALIBRATION_RUNS_PER_LAB` choices), its other cells scored, the other source labs as
    the source; the same setting the estimates are made in. With two or more labelled cells,
    each of them is also left out in turn and scored (group
    :data:`~battgai.health.estimation.pick.LABELLED_GROUP`). The cells a run estimates are
    never held out. ``rel`` is :func:`_source_relative` of ``labs`` when the caller has it already.

    Returns
    -------
    dict
        Pipeline -> group -> (estimate - label, sigma), relative SOH (:func:`mean_sigma`); NaN
        errors where a fold cannot fit the pipeline (source only, with no other source lab).
    """
    rel = _source_relative(labs, window) if rel is None else rel
    out: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {name: {} for name in fits}

    def score(group: str, source: list[CurveSet], train: CurveSet, held: CurveSet) -> None:
        source = [s for s in source if len(s)]  # a lab (or cell) whose curves never reach the window adds nothing
        if not len(held) or len(train) < MIN_LABELLED_CYCLES:
            return
        x = features(held, window)
        for name, fit in fits.items():
            try:
                mean, sigma = mean_sigma(fit(CurveSet.concat(source) if source else None, train), x)
            except TransferError:  # a pipeline this fold cannot fit (source only, with no other source lab)
                mean, sigma = np.full(len(x), np.nan), np.ones(len(x))
            out[name].setdefault(group, []).append((mean - held.soh, sigma))

    for name, lab in labs.items():
        cells = list(map(str, np.unique(lab.cell_id)))
        if len(cells) < 2:
            continue
        others = [v for k, v in rel.items() if k != name]
        for cell in cells[:CALIBRATION_RUNS_PER_LAB]:
            pseudo = _lab_relative(lab, [cell], window)
            mine = pseudo.cell_id == cell
            score(name, others, pseudo.subset(mine), pseudo.subset(~mine))
    labelled = np.unique(target.cell_id)
    if len(labelled) > 1:
        for cell in labelled:
            mine = target.cell_id == cell
            score(LABELLED_GROUP, list(rel.values()), target.subset(~mine), target.subset(mine))
    return {name: {g: (np.concatenate([e for e, _ in v]), np.concatenate([s for _, s in v])) for g, v in per.items()}
            for name, per in out.items()}


def calibration_errors(labs: dict[str, CurveSet], target: CurveSet, window: tuple[float, float], fit: Fit,
                       rel: dict[str, CurveSet] | None = None) -> dict[str, np.ndarray]:
    """``|error| / sigma`` of one pipeline on the cells :func:`held_out_errors` holds out, per group.

    The band is calibrated on these scores of the pipeline a run uses (:func:`group_band_scale`).
    """
    per = held_out_errors(labs, target, window, {"": fit}, rel)[""]
    scores = {g: np.abs(e) / s for g, (e, s) in per.items()}
    return {g: v for g, v in scores.items() if np.isfinite(v).all()}


def band_scale(errors: np.ndarray, coverage: float = BAND_COVERAGE) -> float:
    """Factor on sigma so that two sigmas hold ``coverage`` of ``errors`` (``|error| / sigma``); 1 with none.

    Split-conformal calibration of a normalised score (Lei et al. 2018, "Distribution-free
    predictive inference for regression", JASA): the empirical quantile of held-out scores, with
    the finite-sample correction ``ceil((n + 1) coverage) / n``.
    """
    n = len(errors)
    if n == 0:
        return 1.0
    q = min(1.0, np.ceil((n + 1) * coverage) / n)
    return float(np.quantile(errors, q) / 2.0)


def group_band_scale(errors: dict[str, np.ndarray], coverage: float = BAND_COVERAGE) -> tuple[float, dict]:
    """The band factor that holds ``coverage`` in every calibration group, and each group's own factor.

    Groups (labs) differ in how far off a pipeline is: pooled per cycle, the group with the most
    cycles sets the factor and a harder group is covered far less (a NASA group held 50 % of a
    band pooled to 95 %). The widest group's factor holds ``coverage`` in each group calibrated on.
    """
    per_group = {g: band_scale(e, coverage) for g, e in errors.items()}
    return (max(per_group.values()) if per_group else 1.0), per_group


def _refit(name: str, window: tuple[float, float], seed: int, generator_steps: int) -> Fit:
    """``fit(source, labelled)`` for pipeline ``name``: the same recipe refitted on each held-out fold."""
    return lambda src, train: fit_pipeline(name, src, train, window, seed, generator_steps)


def _extrapolating(name: str, model: object, x: np.ndarray, source: CurveSet | None, target: CurveSet,
                   window: tuple[float, float]) -> np.ndarray:
    """Rows of ``x`` outside what pipeline ``name`` was trained on (its own flag where it has one)."""
    if isinstance(model, TransferModel):
        return model.predict(x)[2]
    train = features(source if name.startswith("source only") else target, window)
    return outside(x, train.min(axis=0), train.max(axis=0))


def run(curves: CurveSet, labelled: list[str], source_labs: dict[str, CurveSet] | None,
        window: tuple[float, float] = WINDOW_FRACTION, generator_steps: int = 0, seed: int = 0,
        source_name: str = "none") -> TransferResult:
    """Fit on ``source_labs`` + the ``labelled`` cells of ``curves``; estimate and score the other cells.

    The estimates come from the pipeline of :func:`pipelines` with the lowest RMSE on the cells
    :func:`held_out_errors` holds out (:func:`~battgai.health.estimation.pick.pick`): the labelled
    cells left out one at a time when there are two or more, else the source labs' cells. The
    other cells' labels (where the file holds them) only score the pipelines afterwards.

    Parameters
    ----------
    curves : CurveSet
        The researcher's cells, resampled on their own voltage range (:func:`curves_of`); SOH
        against their nominal capacity.
    labelled : list of str
        Cells whose (file or coulomb-counted) capacities are used for training.
    source_labs : dict or None
        Lab name -> curve set (e.g. :func:`nasa_source_labs`); None trains on the labelled cells alone.
    window : (float, float)
        The estimator's window as fractions of the loaded voltage range.
    generator_steps : int
        > 0 adds the pipeline with cVAE curves of the labelled cells (trained for that many steps).

    Raises
    ------
    TransferError
        No labelled cell, too few labelled cycles, a labelled cell far from the others, no curve
        reaching the window.
    """
    curves, dropped = full_labels(curves, labelled)
    warnings = check_labelled(curves, labelled) + dropped
    frame = fit_frame(curves, labelled, window)
    seen = reaches_window(curves, frame)
    hi, lo = frame.window_v
    lab = np.isin(curves.cell_id, labelled)
    if not (seen & lab).any():
        raise TransferError(f"No labelled curve covers the window {hi:.3f} -> {lo:.3f} V (its loaded voltage must "
                            "start above and end below it): choose a window nearer the top (smaller fractions).")
    if (~seen).any():
        warnings.append(f"{int((~seen).sum())} of {len(curves)} curves never reach the window {hi:.3f} -> {lo:.3f} V "
                        "and get no estimate.")
    rel = relative(curves.subset(seen), frame)
    lab = np.isin(rel.cell_id, labelled)
    target, others = rel.subset(lab), rel.subset(~lab)
    rel_labs = _source_relative(source_labs, window) if source_labs else {}
    source = CurveSet.concat(list(rel_labs.values())) if rel_labs else None
    fitted = pipelines(source, target, window, seed, generator_steps)
    fits = {name: _refit(name, window, seed, generator_steps) for name in fitted}
    held = held_out_errors(source_labs or {}, target, window, fits, rel_labs)
    # Without a source, TRANSFER is the Daume model on the labelled cells alone (it still gives a sigma).
    chosen = pick({name: {g: e for g, (e, _) in per.items()} for name, per in held.items()}, TRANSFER)
    used = chosen.pipeline
    model = fitted[used] if used in fitted else fit_pipeline(used, None, target, window, seed)
    calib = {g: np.abs(e) / sg for g, (e, sg) in held.get(used, {}).items() if np.isfinite(e).all()}
    scale, group_scales = group_band_scale(calib)
    n_held = sum(len(v) for v in calib.values())
    if calib:
        band = (f"soh_low / soh_high: estimate +/- 2 soh_sigma, calibrated to hold {BAND_COVERAGE:.0%} of true values "
                f"in each group: soh_sigma is the pipeline's own sigma (ensemble spread + cell scatter; 1 for a "
                f"pipeline without one) x {scale:.2f}, the widest factor at which 2 sigma held {BAND_COVERAGE:.0%} "
                f"of the errors of this pipeline, refitted on cells held out of each group "
                f"({', '.join(f'{g} {v:.2f}' for g, v in group_scales.items())}; {n_held} errors)")
    else:
        band = ("soh_low / soh_high: estimate +/- 2 soh_sigma, NOT calibrated (no source lab and a single labelled "
                "cell: nothing to hold out); soh_sigma is the ensemble spread + cell scatter")
        warnings.append("The uncertainty band is not calibrated: with one labelled cell and no source data there "
                        "is no held-out cell to check it on. Label a second cell or keep the NASA source.")
    to_soh = frame.c_ref / curves.nominal_ah
    x = features(others, window)
    mean, sigma = mean_sigma(model, x) if len(others) else (np.zeros(0), np.zeros(0))
    extrap = _extrapolating(used, model, x, source, target, window) if len(others) else np.zeros(0, bool)
    sigma = sigma * scale
    estimates = pd.DataFrame({
        "cell_id": others.cell_id, "cycle": others.cycle, "soh_estimate": mean * to_soh,
        "soh_sigma": sigma * to_soh, "soh_low": (mean - 2 * sigma) * to_soh, "soh_high": (mean + 2 * sigma) * to_soh,
        "extrapolating": extrap.astype(bool), "soh_in_file": others.soh * to_soh,
        "capacity_source": others.capacity_source,
    })
    if extrap.any():
        warnings.append(f"{int(extrap.sum())} estimate(s) extrapolate: their window charge or C-rate lies outside "
                        "every training curve's (column 'extrapolating').")
    rows = []
    scored, against = score_basis(others.capacity_source)
    if len(others) and against == "coulomb-counted, partial":
        warnings.append("Every scored cycle is a partial discharge (its count stops above the cut-off): the scores "
                        "are against coulomb-counted, partial charges, not the cells' capacities.")
    for name, m in fitted.items():
        if not len(others):
            break
        p = m.predict(x)
        p = p[0] if isinstance(p, tuple) else p
        err = ((p - others.soh) * to_soh * 100)[scored]
        rows.append({"pipeline": name, "rmse_soh_points": float(np.sqrt(np.mean(err**2))),
                     "bias_soh_points": float(err.mean()), "curves": len(err), "scored_against": against})
    prov = Provenance.now(used if used in fitted else "labelled only (TransferModel)", "", {
        "pipeline_pick": chosen.reason(), "pipeline_pick_rmse": chosen.rmse,
        "labelled_cells": sorted(labelled), "source": source_name, "window_fraction": list(window),
        "window_v": [round(hi, 4), round(lo, 4)], "c_ref_ah": frame.c_ref, "nominal_ah": curves.nominal_ah,
        "v_top": frame.v_top, "v_bot": frame.v_bot, "generator_steps": generator_steps,
        "soh": "capacity / nominal; soh_sigma is one (calibrated) standard deviation", "band": band,
        "band_scale": scale, "band_scale_per_group": group_scales, "band_calibration_errors": n_held,
        "soh_in_file": "the file's (or coulomb-counted) capacity / nominal, used only to score; capacity_source "
                       "says which: file, coulomb_full or coulomb_partial (a partial discharge, not the capacity)",
        "scored_against": against,
    }, seed)
    return TransferResult(estimates, pd.DataFrame(rows, columns=["pipeline", "rmse_soh_points", "bias_soh_points",
                                                                 "curves", "scored_against"]), frame, warnings, prov,
                          chosen)
