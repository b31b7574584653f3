"""Battery health augmentation: real curves -> conditional generator -> does synthetic data help?"""

from __future__ import annotations

import numpy as np
import streamlit as st

from battgai.core import engine
from battgai.core.data import DataNotFound, nasa_cells
from battgai.core.provenance import Provenance
from battgai.core.registry import ChecksumError, ModelNotFound, load_card
from battgai.health import schema, workflow
from battgai.health.generation import generators
from battgai.health.preprocess import WINDOW_V, CurveSet, window_observed
from battgai.uploads.errors import UploadError, quoted
from components.curve_plot import Curve, show_curves
from components.deep_link import through_app
from components.download import download_bundle
from components.health_charts import latent_figure, rmse_bar_figure
from components.run_job import heavy_step, reopened, reopened_banner, saved_note

through_app()

V_TITLE, Q_TITLE = "voltage under load (V)", "charge delivered (Ah)"
MAX_SHOWN = 60


@st.cache_data(show_spinner="Reading and resampling discharge curves...")
def _load(source: str, cells: tuple[str, ...]) -> workflow.Loaded:
    return workflow.load_curves(source, list(cells))


@st.cache_data(show_spinner="Mapping the uploaded file...")
def _load_upload(data: bytes, mapping: tuple[tuple[str, str | None], ...], nominal: float, name: str,
                 cutoff: float):
    return workflow.from_upload(schema.read_upload(data, dict(mapping), nominal, name, cutoff_v=cutoff or None))


@st.cache_resource(show_spinner="Loading the bundled SOH estimator...")
def _estimator():
    from battgai.health.estimation.estimator import load_ridge_ic

    return load_ridge_ic()


@st.cache_resource(show_spinner="Loading the bundled generator...")
def _generator(kind: str):
    from battgai.health.generation import generators

    return generators.load(kind)


def _curves_for_plot(c: CurveSet, dash: bool = False, prefix: str = "") -> list[Curve]:
    idx = np.linspace(0, len(c) - 1, min(len(c), MAX_SHOWN)).round().astype(int)
    return [Curve(c.q[k], c.grid, f"{prefix}{c.cell_id[k]} #{c.cycle[k]} SOH {c.soh[k]:.2f}",
                  float(c.soh[k]), dash) for k in np.unique(idx)]


def show_synthetic(result: workflow.Generation, real: CurveSet | None = None) -> None:
    """Synthetic curves (dashed), over the nearest real curve of each (solid) when the real ones are at hand."""
    syn = result.synthetic
    if real is not None:
        st.caption("Synthetic curves (dashed) over the nearest real curve of each (solid).")
        near = _curves_for_plot(real.subset(np.unique(result.nearest)))
    else:
        st.caption("Synthetic curves (dashed).")
        near = []
    show_curves(near + _curves_for_plot(syn, dash=True, prefix="synthetic "), Q_TITLE, V_TITLE)
    download_bundle("Download synthetic curves (CSV in the cycling schema + provenance)",
                    {"synthetic_curves.csv": result.csv()}, result.provenance, "battgai_synthetic_curves.zip",
                    key="download")


def experiment_csv(res) -> bytes:
    rows = [f"{est},{arm},{i},{v:.6g}" for est, arms in res.rmse.items() for arm, values in arms.items()
            for i, v in enumerate(values)]
    return ("estimator,arm,run,rmse_soh_points\n" + "\n".join(rows) + "\n").encode()


def show_experiment(done_regime: str, done_est: str, res) -> None:
    summary = res.summary(done_est)
    label = "2 training cells" if done_regime == "two" else "first 30 % of life"
    st.plotly_chart(rmse_bar_figure(summary, f"{label}, {done_est}: held-out SOH RMSE, mean +- std over runs"),
                    width="stretch")
    st.table({arm: {"RMSE mean": f"{m:.2f}", "std": f"{s:.2f}",
                    "mean vs real only": f"{res.change_of_means(done_est, arm):+.0%}"}
              for arm, (m, s) in summary.items()})
    what = "training cells" if done_regime == "two" else "held-out cell"
    st.caption(f"Runs ({what}): " + "; ".join(", ".join(map(quoted, s)) for s in res.splits))


def show_transfer(res) -> None:
    for w in res.warnings:
        st.warning(w)
    st.success(res.pick.reason())  # pipeline and source group names are the product's own, no file text
    if len(res.scores):
        against = res.scores["scored_against"].iloc[0] if "scored_against" in res.scores else "file capacities"
        st.caption(f"Each pipeline scored on the unlabelled cells against {against} (never used for training): "
                   "RMSE and bias in SOH points.")
        st.table(res.scores.set_index("pipeline").drop(columns="scored_against", errors="ignore").round(2))
    lines = []
    e = res.estimates
    source = e["capacity_source"] if "capacity_source" in e else np.full(len(e), "file")
    full = np.isin(source, schema.FULL_SOURCES)
    for cell in e["cell_id"].unique()[:MAX_SHOWN // 3]:
        m = (e["cell_id"] == cell).to_numpy()
        lines.append(Curve(e["cycle"][m].to_numpy(), e["soh_estimate"][m].to_numpy() * 100, f"{cell} estimated"))
        if (m & full).any():
            lines.append(Curve(e["cycle"][m & full].to_numpy(), e["soh_in_file"][m & full].to_numpy() * 100,
                               f"{cell} in file", dash=True))
        if (m & ~full).any():
            lines.append(Curve(e["cycle"][m & ~full].to_numpy(), e["soh_in_file"][m & ~full].to_numpy() * 100,
                               f"{cell} partial discharge (not its capacity)", markers=True))
    if lines:
        show_curves(lines, "cycle", "SOH (%)")
    st.caption(f"Uncertainty: {res.provenance.settings['band']}.")
    download_bundle("Download SOH estimates (CSV: estimate, 1-sigma, 95 % band, extrapolating) + pipeline scores + "
                    "provenance",
                    {"soh_estimates.csv": res.csv(), "pipelines.csv": res.scores_csv()}, res.provenance,
                    "battgai_soh_transfer.zip", key="download_transfer")


st.title("Battery health augmentation")
st.caption(
    "Generate discharge curves at a chosen state of health (SOH = capacity / nominal) with a conditional "
    "VAE or a diffusion model, then test whether they make an SOH estimator better on cells it has never seen. "
    f"Estimators see only the {WINDOW_V[0]} -> {WINDOW_V[1]} V window of a discharge, as field data arrive."
)

record = reopened("health")
if record is not None:
    reopened_banner(record)
    state = record.state()
    if record.task == "health.generate":
        show_synthetic(state)
    elif record.task == "health.transfer":
        from battgai.health.estimation.owncells import TransferResult

        show_transfer(TransferResult.from_state(state))
    else:
        show_experiment(*state)
    st.download_button("Download the run (zip)", record.zip, f"battgai_{record.id}.zip", key="reopened_zip")
    st.stop()

# 1. Data ---------------------------------------------------------------------------------------
source = st.radio("Data", ["NASA PCoE cells", "Upload a CSV", "Demo cells"], horizontal=True, key="source")
loaded: workflow.Loaded | None = None
if source == "NASA PCoE cells":
    try:
        available = nasa_cells()
    except DataNotFound as exc:
        st.info(f"NASA data not found ({exc}). Showing synthetic demo cells made by battgai instead.")
        loaded = _load("demo", ())
    else:
        cells = st.multiselect("Cells", available, default=[c for c in ("B0005", "B0006", "B0007", "B0018")
                                                            if c in available], key="cells")
        if cells:
            loaded = _load("nasa", tuple(cells))
        else:
            st.warning("Pick at least one cell.")
elif source == "Upload a CSV":
    st.download_button("Template CSV (the cycling schema)", schema.template_csv(), "battgai_cycling_template.csv",
                       mime="text/csv", key="template")
    up = st.file_uploader(f"Cycler export (CSV, one row per sample; at most {workflow.MAX_CYCLES:,} discharge cycles)",
                          type=["csv", "txt"], key="upload")
    nominal = st.number_input("Nominal capacity (Ah)", 0.01, 500.0, 2.0, 0.1, key="nominal")
    cutoff = st.number_input("Discharge cut-off (V); 0: read from each cell's discharges", 0.0, 10.0, 0.0, 0.05,
                             key="cutoff", help="Without a capacity column, a discharge that stops above the cut-off "
                                                "is partial: its counted charge is not the cell's capacity.")
    if up is not None:
        raw = up.getvalue()
        try:
            from battgai.uploads import read_csv

            columns = list(read_csv(raw, nrows=1000).columns)  # the whole file is parsed once, when mapped
            guess = schema.guess_mapping(columns)
            st.write("Column mapping (detected; correct it if needed). Units and the sign of the current are "
                     "detected after mapping.")
            cols = st.columns(len(schema.SCHEMA))
            mapping = {}
            for col, field in zip(cols, schema.SCHEMA, strict=True):
                options = ["(none)", *columns]
                pick = col.selectbox(field, options, index=options.index(guess[field]) if guess[field] else 0,
                                     key=f"map_{field}")
                mapping[field] = None if pick == "(none)" else pick
            loaded = _load_upload(raw, tuple(mapping.items()), float(nominal), up.name, float(cutoff))
        except (UploadError, schema.MappingError, ValueError) as exc:
            st.error(str(exc))
else:
    loaded = _load("demo", ())

if loaded is None:
    st.stop()
if loaded.is_demo:
    st.info("These are synthetic demo cells made by battgai (a smooth open-circuit curve with ageing), "
            "not measurements: use them to try the tool.")
for note in loaded.data.notes:
    st.caption(f"Conversion: {note}")
real = loaded.curves
st.subheader(f"Real discharge curves ({len(real)} cycles, {len(np.unique(real.cell_id))} cells)")
show_curves(_curves_for_plot(real), Q_TITLE, V_TITLE)

with st.expander("Estimate SOH from the 3.9 -> 3.5 V window (bundled ridge on charge + dQ/dV shape, "
                 "health_soh_ridge_ic)"):
    loaded_key = (tuple(np.unique(real.cell_id)), len(real))
    if st.button("Estimate", key="estimate"):
        try:
            est = workflow.estimate_soh(real, _estimator(), "health_soh_ridge_ic")
        except (ModelNotFound, ChecksumError, ValueError) as exc:
            st.error(f"Cannot estimate: {exc}")
        else:
            st.session_state["health_estimate"] = (*loaded_key, est)
    kept = st.session_state.get("health_estimate")
    # Shown for the curves it was computed on only: other data loaded since then gets its own Estimate.
    est = kept[2] if kept and kept[:2] == loaded_key else None
    if est is not None:
        n_out = int(est.extrapolating.sum())
        n_scored = int(est.scored.sum())
        st.write(f"RMSE against {est.scored_against}: {est.rmse:.2f} points over the "
                 f"{int((est.scored & ~est.extrapolating).sum())} of them inside the estimator's training range (all "
                 f"{n_scored}: {est.rmse_all:.2f}; in-sample for NASA cells: the bundled model was trained on them; "
                 "see the model card for held-out numbers).")
        if n_scored < len(est.curves):
            st.caption(f"{len(est.curves) - n_scored} partial discharges (counted current that stops above the "
                       "cut-off: not the cell's capacity) are left out of the RMSE.")
        if n_out:
            st.warning(f"{n_out} of {len(est.curves)} estimates extrapolate (drawn as crosses, left out of the RMSE "
                       "above): their window charge, C-rate, temperature or estimated SOH lies outside what the "
                       f"estimator was trained on; e.g. {est.reasons[int(np.flatnonzero(est.extrapolating)[0])]}. "
                       "Treat them as a direction, not a number.")
        lines = []
        for cell in np.unique(est.curves.cell_id):
            m = est.curves.cell_id == cell
            label, part = m & est.scored, m & ~est.scored
            lines.append(Curve(est.curves.cycle[label], est.curves.soh[label] * 100, f"{cell} {est.scored_against}"))
            if part.any():
                lines.append(Curve(est.curves.cycle[part], est.curves.soh[part] * 100,
                                   f"{cell} partial discharge (not its capacity)", markers=True))
            ok, out = m & ~est.extrapolating, m & est.extrapolating
            if ok.any():
                lines.append(Curve(est.curves.cycle[ok], est.predicted[ok] * 100, f"{cell} estimated", dash=True))
            if out.any():
                lines.append(Curve(est.curves.cycle[out], est.predicted[out] * 100, f"{cell} extrapolating",
                                   markers=True))
        show_curves(lines, "cycle", "SOH (%)")
        download_bundle("Download SOH estimates (CSV: estimate, labelled, extrapolating, reason) + provenance",
                        {"soh_estimates.csv": est.table().to_csv(index=False).encode()},
                        Provenance.now(est.model, load_card(est.model).sha256, {"window_v": list(WINDOW_V),
                                                      "curves": len(est.curves), "extrapolating": n_out}),
                        "battgai_soh_estimates.zip", key="download_estimate")

# 1b. Your own cells ----------------------------------------------------------------------------
@st.cache_data(show_spinner="Grouping the NASA source cells...")
def _source_labs(exclude: tuple[str, ...]):
    from battgai.health.estimation.owncells import nasa_source_labs
    from battgai.health.preprocess import nasa_curves

    curves = nasa_curves()
    return nasa_source_labs(curves.subset(~np.isin(curves.cell_id, exclude)))


with st.expander("Your own cells: SOH from a few labelled ones (transfer)"):
    from battgai.health.estimation import owncells

    st.caption("Mark the cells whose capacity you know (full discharges). The estimator learns from the NASA "
               "groups plus these cells, with capacity relative to your labelled cells' first cycles and the "
               "window relative to your cells' own voltage range (no nominal voltage, sampling period or "
               "temperature assumed), and estimates every cycle of the other cells with an uncertainty.")
    all_cells = sorted(map(str, np.unique(real.cell_id)))
    t1, t2, t3 = st.columns(3)
    labelled = t1.multiselect("Labelled cells", all_cells, default=all_cells[:1], key="labelled")
    top = t2.slider("Window top (fraction of the voltage range)", 0.0, 0.5, 0.05, 0.01, key="win_top")
    bottom = t3.slider("Window bottom", 0.1, 1.0, 0.4, 0.05, key="win_bottom")
    use_gen = st.checkbox("Add cVAE curves of the labelled cells (about 5 s)", key="transfer_gen")
    if st.button("Estimate the other cells", key="transfer"):
        try:
            mine = owncells.curves_of(loaded.data)
            try:
                exclude = tuple(all_cells) if loaded.data.source == "NASA PCoE" else ()
                source, source_name = _source_labs(exclude), "NASA PCoE groups (your selection left out)"
            except DataNotFound:
                source, source_name = None, "none (NASA data absent)"
                st.info("NASA source data not found: training on your labelled cells alone.")
            owncells.check_labelled(mine, labelled)  # plain input mistakes make no failed run in the store
            steps = 400 if use_gen else 0
            with heavy_step("health.transfer", f"SOH of {loaded.data.source} cells from {', '.join(labelled)}",
                            {"labelled": ", ".join(labelled), "window": f"{top:g}-{bottom:g}",
                             "nominal_ah": loaded.data.nominal_ah, "source": source_name, "generator_steps": steps},
                            queued=use_gen) as run:
                res = engine.run(owncells.run, mine, labelled, source, (top, bottom), steps, source_name=source_name)
                res.save(run)
            saved_note(run)
            st.session_state["health_transfer"] = res
        except ValueError as exc:  # TransferError and unusable curves
            st.error(f"Cannot estimate: {exc}")
            st.session_state.pop("health_transfer", None)
    if "health_transfer" in st.session_state:
        show_transfer(st.session_state["health_transfer"])

# 2. Generate -------------------------------------------------------------------------------------
st.subheader("Generate curves at target SOH")
GENERATOR_LABELS = {"cvae": "cVAE (health_cvae)", "diffusion": "diffusion (health_diffusion)"}
default_kind = generators.default_kind()  # two small card reads: the bench's pick
kind = st.radio("Generator", list(GENERATOR_LABELS), index=list(GENERATOR_LABELS).index(default_kind),
                format_func=lambda k: GENERATOR_LABELS[k] + (" - default (bench pick)" if k == default_kind else ""),
                horizontal=True, key="generator",
                help="The default is chosen by `python -m battgai.bench health --part generators` "
                     "(docs/BENCHMARKS.md): the more realistic whole curves among generators whose curves train an "
                     "estimator within 1.3x of real ones.")
gen = None
try:
    gen = _generator(kind)
except (ModelNotFound, ChecksumError) as exc:
    st.warning(f"Bundled generator unavailable: {exc}")
if loaded.data.source != "NASA PCoE" and gen is not None:
    st.caption("The bundled generator learnt NASA 18650 cells; on other cells its curves show NASA-like shapes "
               "scaled to your nominal capacity.")
c1, c2, c3, c4 = st.columns(4)
soh_text = c1.text_input("Target SOH values", "0.95, 0.85, 0.75", key="soh_targets")
temp = c2.number_input("Temperature (C)", -20.0, 70.0, float(np.clip(np.median(real.temperature_c), -20, 70)),
                       key="temp")
cur = c3.number_input("Discharge current (A)", 0.01, 50.0, float(np.clip(np.median(real.current_a), 0.01, 50)),
                      key="current")
n = c4.number_input("Curves per SOH", 1, 50, 3, key="n",
                    help=f"At most {workflow.MAX_GENERATED_CURVES:,} curves per run (targets x curves per SOH).")
seed = st.number_input("Seed", 0, 10_000, 0, key="seed")
if st.button("Generate", key="generate", disabled=gen is None):
    try:
        targets = [float(s) for s in soh_text.replace(";", ",").split(",") if s.strip()]
        cond = workflow.target_conditions(targets, temp, cur, int(n))
        with heavy_step("health.generate", f"{len(cond)} curves at SOH {', '.join(f'{t:g}' for t in targets)}",
                        {"temperature_c": temp, "current_a": cur, "per_soh": int(n), "seed": int(seed)},
                        queued=False) as run, \
                st.status("Generating...", expanded=False) as status:
            made = engine.run(workflow.generate, gen, cond, real, int(seed))
            run.write("synthetic_curves.csv", made.csv())
            run.set(provenance=made.provenance)
            run.save_state(made)
            status.update(label=f"Generated {len(cond)} curves", state="complete")
        saved_note(run)
        st.session_state["health_generation"] = made
    except ValueError as exc:
        st.error(f"Cannot generate: {exc}")

result: workflow.Generation | None = st.session_state.get("health_generation")
if result is not None and result.synthetic.nominal_ah == real.nominal_ah and result.nearest.max() < len(real):
    show_synthetic(result, real)

if gen is not None and kind == "cvae":
    st.subheader("Latent space")
    st.caption("Each dot is a real curve encoded by the generator. Click a dot (or set z below) to decode that "
               "point at the conditions above and the SOH chosen here.")
    from battgai.health.generation.sample import encode

    z = encode(gen, real)
    l1, l2, l3 = st.columns(3)
    z1 = l1.slider("z1", -3.0, 3.0, 0.0, 0.1, key="z1")
    z2 = l2.slider("z2", -3.0, 3.0, 0.0, 0.1, key="z2")
    soh_z = l3.slider("SOH", 0.5, 1.05, 0.85, 0.01, key="soh_z")
    m1, m2 = st.columns(2)
    with m1:
        labels = [f"{a} #{b} SOH {s:.2f}" for a, b, s in zip(real.cell_id, real.cycle, real.soh, strict=True)]
        event = st.plotly_chart(latent_figure(z, real.soh, labels, (z1, z2)), width="stretch",
                                on_select="rerun", selection_mode="points", key="latent_map")
    picked = None
    points = event.selection.points if event and event.selection else []
    if points:
        picked = int(points[0]["customdata"]) if "customdata" in points[0] else int(points[0]["point_index"])
    with m2:
        if picked is not None:
            point = workflow.latent_point(gen, tuple(z[picked]), tuple(real.conditions()[picked]), real.nominal_ah)
            curves = [Curve(real.q[picked], real.grid, f"real {labels[picked]}"),
                      Curve(point.q[0], point.grid, "decoded at its z and conditions", dash=True)]
        else:
            point = workflow.latent_point(gen, (z1, z2), (soh_z, temp, cur), real.nominal_ah)
            curves = [Curve(point.q[0], point.grid, f"z=({z1:.1f}, {z2:.1f}) SOH {soh_z:.2f}", dash=True)]
        show_curves(curves, Q_TITLE, V_TITLE)

# 3. Experiment -----------------------------------------------------------------------------------
st.subheader("Does synthetic data help? (leave-cells-out)")
cohort = real.subset(window_observed(real))
n_cells = len(np.unique(cohort.cell_id))
REGIMES = {"2 training cells": "two", "first 30 % of each cell's life": "early"}
e1, e2 = st.columns(2)
regime = REGIMES[e1.radio("Low-data regime", list(REGIMES), key="regime")]
estimator = e2.radio("Estimator", ["ridge", "gbm"], horizontal=True, key="estimator")
st.caption(
    "Compare real only with real + noise jitter, real + mixup and real + cVAE curves, same estimator and seed, "
    "tested on cells never trained on. 2 training cells: train on 2 cells, test on the others (3 splits). "
    "First 30 % of life: leave one cell out, train on the first 30 % of every other cell's cycles, test on the "
    "held-out cell's whole life; the cVAE is asked for SOH down to 0.6. The generator is retrained on the "
    "training curves only, briefly (300 steps) in this quick version; the full run is "
    "`python -m battgai.bench health` (docs/BENCHMARKS.md). Only curves whose loaded voltage starts at "
    f"or above {WINDOW_V[0] - 0.02:.2f} V are used ({len(cohort)} of {len(real)})."
)
experiment_blocked = workflow.experiment_problem(n_cells)
if st.button("Run quick experiment", key="experiment", disabled=experiment_blocked is not None):
    from battgai.health.estimation import experiment

    with heavy_step("health.experiment", f"{estimator}, {regime} regime, {n_cells} cells",
                    {"regime": regime, "estimator": estimator, "cells": n_cells, "steps": 300}) as run:
        bar = st.progress(0.0, text="Running splits...")

        def tick(f: float) -> None:
            bar.progress(f, text=f"Running splits... {f:.0%}")

        if regime == "two":
            res = engine.run(experiment.augmentation_experiment, cohort, n_splits=3, seeds=(0,),
                             estimators=(estimator,), steps=300, callbacks={"progress": tick})
        else:
            res = engine.run(experiment.early_life_experiment, cohort, seeds=(0,), estimators=(estimator,),
                             steps=300, callbacks={"progress": tick})
        bar.empty()
        run.write("rmse_per_run.csv", experiment_csv(res))
        run.set(provenance=Provenance.now("health_cvae, retrained on each split's training cells", "", {
            "regime": regime, "estimator": estimator, "steps": 300,
            "cells": sorted(map(str, np.unique(cohort.cell_id)))}, seed=0))
        run.save_state((regime, estimator, res))
    saved_note(run)
    st.session_state["health_experiment"] = (regime, estimator, res)
if experiment_blocked:
    st.caption(experiment_blocked)
if "health_experiment" in st.session_state:
    show_experiment(*st.session_state["health_experiment"])
