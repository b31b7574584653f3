"""Campaigns: start a discovery campaign that runs outside the browser, watch it round by round, take its best."""

import math
import os

import pandas as pd
import plotly.express as px
import streamlit as st

from battgai.cli.campaign import launch, resume
from battgai.core.engine import EngineError
from battgai.materials.checks import evaluate
from battgai.materials.discovery import campaign
from battgai.materials.discovery.campaign import CampaignError, CampaignFolder, CampaignSettings
from components.battery_conditions import battery_conditions, conditions_text, preset_picker
from components.deep_link import through_app
from components.run_job import store
from components.structure_viewer import show_structure

through_app()


@st.cache_data
def generator_names() -> list[str]:
    """Bundled crystal generators, the default first."""
    from battgai.core.registry import list_cards

    names = [c.name for c in list_cards() if c.task == "materials"]
    return sorted(names, key=lambda name: (name != campaign.DEFAULT_MODEL, name))


@st.cache_data
def known_electrodes(ion: str):
    """MP insertion electrodes of ``ion`` (voltage, capacity), or None without the shared data."""
    from battgai.core.data import DataNotFound
    from battgai.materials.checks.battery import known_electrodes as load

    try:
        return load(ion)
    except DataNotFound:
        return None


st.title("Discovery campaigns")
st.write(
    "A campaign runs rounds of: sample crystals with the generator under your conditions -> checks -> static CHGNet "
    "screen -> relax the best (FIRE, on Ray workers that each hold one CHGNet) -> energy above the MP-20 hull, "
    "newness (against every known phase on hand: all MP-20 splits, MPTS-52, the insertion electrodes) and "
    "uniqueness judged on the relaxed crystal. With a working ion a crystal is **found** when it is also new, "
    "holds the ion and another element, and its average voltage and capacity meet the window and minimum. "
    "It runs as its own process: closing this tab or "
    "restarting the server does not stop it, and a campaign cut off at any moment resumes at its first unfinished "
    f"round. Crystals more than {evaluate.SUSPECT_BELOW_HULL:g} eV/atom *below* the known hull are **suspect** "
    "(far likelier a hole of the potential or a missing reference phase than a discovery) and never counted as "
    "stable or S.U.N."
)
runs_store = store()

with st.expander("Start a campaign", expanded=not runs_store.list(campaign.TASK)):
    preset_picker("camp")
    with st.form("campaign_form"):
        chosen_conditions = battery_conditions("camp")
        c1, c2, c3, c4 = st.columns(4)
        rounds = c1.number_input("Rounds (at most)", 1, 200, 3, key="camp_rounds")
        per_round = c2.number_input("Crystals per round", 1, campaign.MAX_PER_ROUND, 20, key="camp_per_round")
        relax = c3.number_input("Relaxed per round", 0, campaign.MAX_PER_ROUND, 5, key="camp_relax",
                                help="the best by static E_hull; about 2-5 s of one CPU core each")
        steps = c4.number_input("FIRE steps", 1, 500, 100, key="camp_steps")
        s1, s2, s3, s4 = st.columns(4)
        cpu_hours = s1.number_input("Stop after CPU hours (0: no budget)", 0.0, 1000.0, 0.0, step=0.5,
                                    key="camp_cpu", help="CPU time of the driver and every Ray worker together, "
                                                         "checked after each round")
        stop_found = s2.number_input("Stop once found (0: run every round)", 0, 10_000, 0, key="camp_stop_found")
        seed = s3.number_input("Seed", 0, 2**31 - 1, 0, key="camp_seed")
        learn = s4.number_input("Learning steps between rounds", 0, 200, 0, key="camp_learn",
                                help="reward fine-tuning of the generator on what the campaign counts as found "
                                     "(static CHGNet; suspect crystals earn nothing), under the campaign's "
                                     "conditions and guidance, with the element / density guard; 32 crystals "
                                     "per step, about 5-10 s of CPU each; 0: every round samples the model")
        m1, m2, m3, m4 = st.columns(4)
        model = m1.selectbox("Generator", generator_names(), key="camp_model")
        novel_only = m2.checkbox("Novel only", key="camp_novel_only",
                                 help="reject sampled crystals that match a known phase and sample again")
        address = m3.text_input("Ray address (optional)", key="camp_ray",
                                help="host:port of an existing Ray cluster; empty: a local Ray on this machine")
        audit = m4.number_input("DFT audit: best found crystals", 0, campaign.MAX_DFT_AUDIT, 0, key="camp_dft",
                                help="after the rounds, the found crystals with the lowest E_hull and their "
                                     "decomposition phases are computed with DFT (GPAW, MP's settings) on the Ray "
                                     "workers: minutes per crystal. 0: no audit.")
        dft_preset = m4.selectbox("DFT preset", ["screen", "accurate"], key="camp_dft_preset")
        start = st.form_submit_button("Start campaign", type="primary")
    if start:
        c = chosen_conditions
        settings = CampaignSettings(conditions=conditions_text(c), rounds=int(rounds), per_round=int(per_round),
                                    relax=int(relax), seed=int(seed), relax_steps=int(steps), model=model,
                                    novel_only=novel_only, learn_steps=int(learn), dft_audit=int(audit),
                                    dft_preset=dft_preset, v_min=c.v_min, v_max=c.v_max,
                                    min_capacity=c.min_capacity if c.ion else 0.0,
                                    max_cpu_hours=float(cpu_hours), stop_found=int(stop_found))
        try:
            run = launch(settings, address.strip() or None, runs_store)
        except (CampaignError, EngineError, OSError) as exc:
            st.error(f"Campaign not started: {exc}")
        else:
            st.session_state["camp_chosen"] = run.id
            st.success(f"Started: it runs in its own process (run `{run.id}`).")

records = runs_store.list(campaign.TASK)
if not records:
    st.info("No campaigns yet.")
    st.stop()
ids = [r.id for r in records]
if st.query_params.get("run") in ids and "camp_chosen" not in st.session_state:
    st.session_state["camp_chosen"] = st.query_params["run"]
if st.session_state.get("camp_chosen") not in ids:
    st.session_state["camp_chosen"] = ids[0]
labels = {r.id: f"{r.created.replace('T', ' ')[:19]} · {r.title} ({r.status})" for r in records}
chosen = st.selectbox("Campaign", ids, format_func=labels.__getitem__, key="camp_chosen")


def verdict_counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["verdict"]] = out.get(r["verdict"], 0) + 1
    return out


@st.fragment(run_every=5)
def watch(run_id: str) -> None:
    """The chosen campaign as it stands; reruns every 5 s, so a running one is followed round by round."""
    record = runs_store.get(run_id)
    folder = CampaignFolder(campaign.data_root(record.path))
    meta = folder.meta()
    if meta is not None and meta.get("format") != campaign.FORMAT:
        st.warning(f"This campaign was written by battgai {meta.get('battgai_version')} in folder format "
                   f"{meta.get('format')}; this version reads format {campaign.FORMAT}. Its files are left as "
                   f"they are in `{record.path}` (the Runs page still downloads them).")
        return
    status = folder.status()
    st.caption(f"Status: **{record.status}**" + (f" · {status.get('step')}" if record.status == "running" else "")
               + (f" · {record.error}" if record.error else ""))
    if record.status == "running" and status.get("pid") and st.button("Stop", key="camp_stop",
                                                                       help="committed rounds are kept"):
        try:
            os.kill(int(status["pid"]), 15)
        except OSError as exc:
            st.error(f"Could not stop it: {exc}")
    if record.status == "interrupted":
        st.info("Its process ended before it finished. Resume continues at the first round not committed, with the "
                "settings it was started with (the same as "
                f"`python -m battgai campaign --resume --out {record.path}`).")
        if st.button("Resume", key="camp_resume", type="primary"):
            try:
                resume(record.path)
            except (CampaignError, OSError) as exc:
                st.error(f"Not resumed: {exc}")
            else:
                st.success("Resumed: it runs in its own process again.")
    if status.get("stopped"):
        st.caption(f"Stopped by its stop rule: {status['stopped']}.")
    rounds = folder.rounds()
    if not rounds:
        st.info("No round finished yet." if record.status == "running" else "No round was committed.")
        log = record.path / "campaign.log"
        if log.exists():
            st.code(log.read_text()[-2000:] or "(no output yet)")
        return
    summaries = pd.DataFrame([campaign.summary(rd) for rd in rounds])
    rows = folder.rows()
    relaxed = [r for r in rows if r["relaxed"]]
    audit = folder.dft_audit()
    target = campaign.stored_settings(meta).target()
    m1, m2, m3, m4, m5, m6 = st.columns(6)
    m1.metric("Rounds", f"{len(rounds)} / {meta['settings']['rounds']}")
    m2.metric("Found", sum(r["found"] for r in rows), help=target.describe())
    m3.metric("S.U.N. (CHGNet)", f"{sum(r['sun'] for r in relaxed)} of {len(relaxed)} relaxed",
              help="stable, unique and new against every known phase, whatever the battery objective")
    m6.metric("DFT-confirmed", f"{audit['confirmed']} of {len(audit['rows'])} audited" if audit else "-",
              help="the best found crystals checked with DFT (GPAW): E_hull <= 0.1 eV/atom against their "
                   "decomposition phases computed the same way; set 'DFT audit' when starting a campaign")
    m4.metric("Suspect", sum(r["suspect"] for r in rows),
              help=f"more than {evaluate.SUSPECT_BELOW_HULL:g} eV/atom below the known hull, at the static screen "
                   "or after relaxing: never counted stable")
    m5.metric("CPU time", f"{summaries.cpu_seconds.sum() / 3600:.2f} h",
              help="driver and Ray workers together; a CPU-time budget counts this")
    st.dataframe(summaries.rename(columns={"sun_rate": "S.U.N. rate", "new_rate": "new rate",
                                           "candidates_per_minute": "crystals/min"}),
                 hide_index=True, width="stretch")
    if len(summaries) > 1:
        st.line_chart(summaries.set_index("round")[["found", "sun", "suspect"]], x_label="round")
    if relaxed:
        hist = pd.DataFrame({"E_hull (eV/atom)": [r["e_hull"] for r in relaxed],
                             "verdict": [r["verdict"] for r in relaxed]})
        st.plotly_chart(px.histogram(hist, x="E_hull (eV/atom)", color="verdict", nbins=30,
                                     title="Relaxed crystals: energy above the MP-20 hull"), key="camp_hist")
    st.caption(", ".join(f"{k}: {v}" for k, v in sorted(verdict_counts(rows).items())))


watch(chosen)

record = runs_store.get(chosen)
folder = CampaignFolder(campaign.data_root(record.path))
meta = folder.meta()
if meta is None or meta.get("format") != campaign.FORMAT or not folder.committed():
    st.stop()
rows = folder.rows()
target = campaign.stored_settings(meta).target()
# Best first: found, then S.U.N., then stable, then by E_hull; suspect ones last whatever their energy.
best = sorted((r for r in rows if r["relaxed"]),
              key=lambda r: (r["suspect"], not r["found"], not r["sun"], not r["stable"], r["e_hull"]))
st.subheader("Best candidates")
if best:
    audit = folder.dft_audit()
    dft = {r["id"]: r for r in (audit["rows"] if audit else [])}
    table = pd.DataFrame(best)[["id", "formula", "found", "voltage", "capacity", "e_hull", "verdict", "new",
                                "known_match", "unique", "n_atoms", "sg_found", "round", "seed"]]
    table.insert(6, "E_hull DFT", [dft.get(i, {}).get("e_above_hull_dft") for i in table.id])
    table.insert(7, "DFT verdict", [dft.get(i, {}).get("verdict", "") for i in table.id])
    st.dataframe(table.head(50), hide_index=True, width="stretch", column_config={
        "voltage": st.column_config.NumberColumn(f"voltage (V vs {target.ion})" if target.ion else "voltage",
                                                 format="%.2f"),
        "capacity": st.column_config.NumberColumn("capacity (mAh/g)", format="%.0f"),
        "e_hull": st.column_config.NumberColumn("E_hull CHGNet (eV/atom)", format="%.3f")})
    if target.active:
        with_ion = [r for r in best if math.isfinite(r["voltage"])]
        known = known_electrodes(target.ion)
        points = pd.DataFrame({"formula": [r["formula"] for r in with_ion],
                               "voltage": [r["voltage"] for r in with_ion],
                               "capacity": [r["capacity"] for r in with_ion],
                               "kind": ["found" if r["found"] else "relaxed, not found" for r in with_ion]})
        if known is not None:
            points = pd.concat([known.assign(kind=f"known {target.ion} electrodes (MP)"), points])
        fig = px.scatter(points, x="capacity", y="voltage", color="kind", hover_name="formula", opacity=0.8,
                         title=f"Voltage vs capacity (vs {target.ion}): this campaign over the known electrodes",
                         labels={"capacity": "capacity (mAh/g)", "voltage": f"average voltage (V vs {target.ion})"})
        if target.v_min is not None and target.v_max is not None:
            fig.add_hrect(y0=target.v_min, y1=target.v_max, opacity=0.08, line_width=0)
        if target.min_capacity:
            fig.add_vline(x=target.min_capacity, line_dash="dot")
        st.plotly_chart(fig, key="camp_vc")
        if known is None:
            st.caption("The known electrodes need the shared data (BATTGAI_DATA_DIR); only this campaign is drawn.")
    pick = st.selectbox("Show in 3D", [r["id"] for r in best[:50]], key="camp_pick",
                        format_func=lambda i: next(f"{i} · {r['formula']} · {r['verdict']}" for r in best
                                                   if r["id"] == i))
    from pymatgen.core import Structure

    rd = folder.read_round(int(pick[1:4]))
    show_structure(Structure.from_dict(next(c["structure"] for c in rd["candidates"] if c["id"] == pick)))
else:
    st.info("No crystal relaxed yet.")
c1, c2 = st.columns(2)
c1.download_button("Download all (CIF zip + CSV with provenance)", folder.cif_zip,
                   file_name=f"campaign_{record.id}.zip", mime="application/zip", key="camp_zip")
c2.download_button("Download the table (CSV)", folder.csv, file_name=f"campaign_{record.id}.csv",
                   mime="text/csv", key="camp_csv")
