"""Materials generation: constraints -> candidates -> checks -> 3D view -> download."""

import dataclasses
import math

import pandas as pd
import plotly.express as px
import streamlit as st

from battgai.core import engine
from battgai.core.provenance import Provenance
from battgai.materials.checks.stability import MAX_RELAX_ATOMS, POTENTIAL_LABELS, POTENTIALS, RELAX_SECONDS
from battgai.materials.checks.validate import MIN_CONTACT_RATIO, nearest_known
from battgai.materials.generation import tokenizer as tk
from battgai.materials.generation.sample import (
    CRYSTAL_SYSTEMS,
    DEFAULT_MODEL,
    Conditions,
    check_conditions,
    conditions_around,
    spacegroups_of_system,
)
from battgai.materials.pipeline import (
    MAX_OVERSAMPLE,
    MAX_SAMPLED_PER_CANDIDATE,
    Candidate,
    UniqueTracker,
    check,
    energies_job,
    generate_job,
    screen_problems,
)
from battgai.uploads import MAX_CIF_ATOMS, MAX_CIF_MB, read_cif
from battgai.uploads.errors import UploadError
from components.deep_link import through_app
from components.dft_panel import dft_panel
from components.download import download_bundle
from components.run_job import heavy_step, reopened, reopened_banner, saved_note
from components.structure_viewer import STYLES, show_structure

through_app()

st.title("Materials generation")
st.write(
    "Ask for crystals under constraints; a small transformer trained here on MP-20 writes them as space group + "
    "Wyckoff sites, so element, space-group and size constraints are obeyed by construction. Every candidate is "
    "checked (distances, SMACT charge balance, uniqueness, new against every known phase on hand, symmetry). "
    "Masks on the "
    "model's choices steer it away from atoms closer than 0.5 A; by default the crystals that still fail, whose "
    f"atoms overlap (closest two nearer than {MIN_CONTACT_RATIO:g} x their radius sum) or that have no "
    "charge-neutral assignment are rejected and sampled again ('Novel only' also rejects those that match a "
    "training structure; without resampling, a mask steers the model to neutral compositions). Energy (CHGNet or "
    "SevenNet-0), energy above hull, voltage and capacity are computed on request."
)

ION_CHOICES = ["none", "Li", "Na", "K", "Mg", "Zn"]
PROPERTY_LABELS = {"formation_energy": "Formation energy (eV/atom)", "band_gap": "Band gap (eV)",
                   "e_above_hull": "Energy above hull (eV/atom)", "voltage": "Average voltage (V)"}


@st.cache_resource(show_spinner="Loading the generator...")
def get_model(name: str = DEFAULT_MODEL):
    from battgai.materials.generation.sample import load_model

    return load_model(name)


@st.cache_data
def generator_names() -> list[str]:
    """Bundled crystal generators, the default first."""
    from battgai.core.registry import list_cards

    names = [c.name for c in list_cards() if c.task == "materials"]
    return sorted(names, key=lambda name: (name != DEFAULT_MODEL, name))


@st.cache_resource(show_spinner="Indexing the known phases...")
def known_and_source():
    from battgai.materials.checks.references import known_phases

    return known_phases()


def get_known():
    return known_and_source()[0]


@st.cache_resource(show_spinner="Indexing MP-20 reference phases...")
def refs_and_source(potential: str):
    from battgai.materials.checks.references import reference_phases

    return reference_phases(potential)


def get_refs(potential: str):
    return refs_and_source(potential)[0]


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def bin_choices(name: str) -> list[str]:
    return ["any", *(tk.property_bin_label(name, b) for b in range(len(tk.PROPERTIES[name]) + 1))]


def elements(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.strip() for e in text.replace(" ", ",").split(",") if e.strip()))


def cif_files(cands: list[Candidate], rows: list[int]) -> dict[str, bytes]:
    return {f"{i}_{cands[i].formula}.cif": cands[i].structure.to(fmt="cif").encode() for i in rows}


def save_candidates(run, cands: list[Candidate], tally, prov: Provenance, dft: list[dict] | None = None) -> None:
    """Keep the candidates as files (CIF + checks CSV, DFT checks when run) and as page state, with provenance."""
    for name, cif in cif_files(cands, list(range(len(cands)))).items():
        run.write(name, cif)
    run.write("checks.csv", pd.DataFrame([c.row() for c in cands]).to_csv(index=False).encode())
    if dft:
        run.write("dft_checks.csv", pd.DataFrame(dft).to_csv(index=False).encode())
    run.set(provenance=prov)
    run.save_state({"cands": cands, "tally": tally, "prov": prov, "dft": dft})


def short(conditions: Conditions) -> str:
    return "; ".join(f"{k}={v}" for k, v in conditions.as_dict().items() if v not in (None, (), [], ""))


record = reopened("materials")
if record is not None:
    if st.session_state.get("mat_loaded_run") != record.id:
        state = record.state()
        st.session_state.update(mat_cands=state["cands"], mat_tally=state["tally"], mat_prov=state["prov"],
                                mat_dft=state.get("dft"), mat_loaded_run=record.id)
    reopened_banner(record)


with st.form("constraints"):
    c1, c2, c3 = st.columns(3)
    allowed = c1.text_input("Allowed elements (empty = any)", "", placeholder="Li, Fe, Mn, P, O")
    required = c1.text_input("Required elements", "", placeholder="O")
    ion = c1.selectbox("Working ion", ION_CHOICES, help="Required in every candidate; voltage and capacity use it.")
    system = c2.selectbox("Crystal system", ["any", *CRYSTAL_SYSTEMS])
    sg_text = c2.text_input("Space groups (numbers, overrides the crystal system)", "", placeholder="62, 166")
    n_atoms = c2.number_input("Atoms per primitive cell (0 = any)", 0, tk.MAX_ATOMS, 0)
    targets = {}
    for name, label in PROPERTY_LABELS.items():
        targets[name] = c3.selectbox(label, bin_choices(name), key=f"target_{name}")
    n = st.slider("Candidates to sample", 10, 500, 50, step=10)
    g1, g2, g3 = st.columns(3)
    seed = g1.number_input("Seed", 0, 2**31 - 1, 0)
    guidance = g2.slider("Property guidance", 1.0, 4.0, 2.0, step=0.5,
                         help="Classifier-free guidance on the property targets: 1 = plain conditioning, "
                              "higher = follow the targets harder (twice the sampling cost).")
    temperature = g2.slider("Temperature", 0.5, 1.5, 1.0, step=0.1,
                            help="Divides the model's logits. Below 1 stays closer to the training crystals "
                                 "(fewer novel ones), above 1 strays further from them (more novel ones, less "
                                 "precise coverage of real crystals); measured in docs/BENCHMARKS.md.")
    element_temperature = g2.slider(
        "Element temperature", 0.5, 2.0, 1.0, step=0.1,
        help="Divides the logits of element tokens once more: above 1 the model writes less common elements into "
             "the structures it knows (new compositions). Measured at 1.4 on 1,000 samples: 80 % novel vs the "
             "training set instead of 73 %, about the same share stable, unique and novel (29 vs 30 % by static "
             "CHGNet), but fewer stable (45 vs 53 %) and densities further from real crystals; docs/BENCHMARKS.md.")
    resample = g3.checkbox("Reject and resample", True,
                           help=f"Reject crystals with atoms closer than 0.5 A, with two atoms closer than "
                                f"{MIN_CONTACT_RATIO:g} x their radius sum (they fuse or end far above the hull "
                                "when relaxed) or without a SMACT charge-neutral assignment, and sample again (up to "
                                f"{MAX_SAMPLED_PER_CANDIDATE} sequences per candidate). Untick to see the raw model "
                                "output.")
    generator = g3.selectbox(
        "Generator", generator_names(), key="mat_generator",
        help="materials_gpt: the GPT trained on MP-20. materials_gpt_rl: the same model after reward fine-tuning "
             "on its own samples (reward: stable by static CHGNet, new, unique; suspect crystals earn nothing): "
             "more of its crystals are new and stable, and they stray further from real crystals' densities "
             "(side by side in docs/BENCHMARKS.md, Campaigns).")
    novel_only = g3.checkbox("Novel only", False,
                             help="Also reject crystals that match a known phase (StructureMatcher against every "
                                  "MP-20 split, MPTS-52 and the insertion-electrode structures, bundled) and sample "
                                  "again: about a quarter of unconstrained samples reproduce a training crystal.")
    oversample = g1.number_input(
        "Screen: sample x times more, keep the best", 1, MAX_OVERSAMPLE, 1,
        help="With a formation-energy, E_hull or voltage target: sample this many times more crystals, compute "
             "static CHGNet energies of all (~0.1 s each) and keep those closest to the targets. 1 = no screening.")
    submitted = st.form_submit_button("Generate", type="primary")

ion_value = None if ion == "none" else ion
try:
    spacegroups = tuple(int(v) for v in sg_text.replace(" ", ",").split(",") if v.strip())
except ValueError:
    spacegroups = None
    st.error(f"Space groups must be numbers 1..230 separated by commas, not {sg_text!r}.")
if spacegroups == () and system != "any":
    spacegroups = spacegroups_of_system(system)
property_values = {name: None if choice == "any" else tk.bin_value(name, bin_choices(name).index(choice) - 1)
                   for name, choice in targets.items()}
conditions = Conditions(allowed_elements=elements(allowed), required_elements=elements(required),
                        spacegroups=spacegroups or (), n_atoms=int(n_atoms) or None, working_ion=ion_value,
                        **property_values)
problems = check_conditions(conditions) if spacegroups is not None else ["bad space groups"]

screen_refs = get_refs("chgnet") if submitted and oversample > 1 else None
if submitted and oversample > 1:
    problems = problems + screen_problems(conditions, screen_refs)
if submitted and novel_only and get_known() is None:
    problems = [*problems, f"'Novel only' needs the known phases: {known_and_source()[1]}."]
if submitted and spacegroups is not None:
    if problems:
        st.error("These constraints cannot be met:\n\n" + "\n".join(f"- {p}" for p in problems))
    else:
        lm = get_model(generator)
        with heavy_step("materials.generate", f"{n} candidates: {short(conditions) or 'unconstrained'}",
                        {"n": n, "seed": int(seed), "model": lm.name}) as run:
            bar = st.progress(0.0, text="Sampling...")
            done = "Sampled, screened and checked" if oversample > 1 else "Sampled and checked"
            cands, tally = engine.run(
                generate_job, lm.name, conditions, n, int(seed), resample=resample, guidance=guidance,
                oversample=int(oversample), screen_potential="chgnet" if oversample > 1 else None,
                temperature=temperature, novel_only=novel_only, element_temperature=element_temperature,
                callbacks={"progress": lambda i, t: bar.progress(i / t, text=f"{done} {i}/{t}")})
            bar.empty()
            prov = Provenance.now(lm.name, lm.sha256, {
                "conditions": conditions.as_dict(), "n": n, "resample": resample, "guidance": guidance,
                "temperature": temperature, "element_temperature": element_temperature,
                "oversample": int(oversample), "novel_only": novel_only,
                "screened_by": "static CHGNet" if oversample > 1 else None}, int(seed))
            save_candidates(run, cands, tally, prov)
        saved_note(run)
        st.session_state.update(mat_cands=cands, mat_tally=tally, mat_prov=prov, mat_dft=None)
        st.caption(sentence(known_and_source()[1]))

with st.expander("Check your own CIF"):
    upload = st.file_uploader(f"CIF file (one crystal, at most {MAX_CIF_ATOMS} atoms and {MAX_CIF_MB} MB)",
                              type=["cif"], key="mat_upload")
    if upload is not None:
        try:
            structure = read_cif(upload.getvalue())
        except UploadError as exc:
            st.error(str(exc))
        else:
            cands = st.session_state.setdefault("mat_cands", [])
            if not any(c.source == "uploaded" and c.structure == structure for c in cands):
                tracker = UniqueTracker()
                for c in cands:
                    tracker.add(c.structure)
                cands.append(check(structure, Conditions(working_ion=ion_value), get_known(),
                                   source="uploaded", tracker=tracker))
                st.session_state.setdefault("mat_prov", Provenance.now("upload", "", {"file": upload.name}))
            st.success(f"{structure.composition.reduced_formula} ({len(structure)} atoms) added to the table.")
            seeded = conditions_around(structure, ion_value)
            seed_problems = check_conditions(seeded)
            if st.button("Generate around it (same elements, space group and size)", disabled=bool(seed_problems)):
                lm = get_model(generator)
                around_novel = novel_only and get_known() is not None
                if novel_only and not around_novel:
                    st.warning(f"'Novel only' is ignored here: {known_and_source()[1]}.")
                with heavy_step("materials.generate", f"{n} candidates around {structure.composition.reduced_formula}",
                                {"n": n, "seed": int(seed), "model": lm.name}) as run:
                    with st.spinner("Sampling around the uploaded structure..."):
                        found, tally = engine.run(generate_job, lm.name, seeded, n, int(seed), resample=resample,
                                                  novel_only=around_novel)
                    prov = Provenance.now(lm.name, lm.sha256, {
                        "conditions": seeded.as_dict(), "n": n, "resample": resample, "novel_only": around_novel,
                        "seeded_from": upload.name}, int(seed))
                    save_candidates(run, [*cands, *found], tally, prov)
                saved_note(run)
                st.session_state.update(mat_cands=[*cands, *found], mat_tally=tally, mat_prov=prov)
            for p in seed_problems:
                st.warning(f"Cannot generate around it: {p}")

cands: list[Candidate] = st.session_state.get("mat_cands", [])
if not cands:
    st.info("Set constraints and press **Generate**; or upload a CIF to check it.")
    st.stop()

tally = st.session_state.get("mat_tally")
if tally is not None and tally.dropped:
    st.caption(f"{tally.sampled} sequences sampled for {tally.accepted} candidates: {tally.dead_end} hit a dead end "
               f"or did not build, {tally.invalid} had atoms closer than 0.5 A, {tally.overlapping} had two atoms "
               f"closer than {MIN_CONTACT_RATIO:g} x their radius sum and {tally.not_neutral} were not "
               "charge-neutral"
               + (f"; {tally.known} matched a training structure" if tally.known else "")
               + " (rejected and resampled)"
               + (f"; {tally.surplus} were drawn beyond what filled the batch" if tally.surplus else "")
               + (f"; {tally.screened_out} were further from the property targets than those kept (static CHGNet "
                  "screen)." if tally.screened_out else "."))
asked = st.session_state["mat_prov"].settings.get("n", 0) if "mat_prov" in st.session_state else 0
if tally is not None and (reason := tally.shortfall_reason(asked)):
    st.warning(reason + (" Loosen the constraints, or untick 'Reject and resample' or 'Novel only' to see "
                         "everything the model makes." if tally.cut_short else
                         " Tick 'Reject and resample' to replace them."))

with st.container(border=True):
    e0, e1, e2, e3 = st.columns([1, 2, 1, 1])
    potential = e0.selectbox("Potential", POTENTIALS, format_func=POTENTIAL_LABELS.__getitem__, key="mat_potential",
                             help="Pretrained interatomic potential for every energy of a run: candidates, "
                                  "reference phases and the ion's metal (both trained on MPtrj).")
    pot = POTENTIAL_LABELS[potential]
    n_valid = sum(c.valid_structure for c in cands)
    if n_valid > 1:
        max_e = e1.slider(f"{pot} on the first valid candidates", 1, n_valid, min(n_valid, 10), key="mat_max_e")
    else:  # a slider needs min < max: a lone uploaded CIF has one valid candidate
        max_e = n_valid
        e1.markdown(f"{pot} on the {n_valid} valid candidate{'s' * (n_valid != 1)}")
    do_relax = e2.checkbox("Relax first (~5 s each)", value=False,
                           help=f"Each relaxation stops after {RELAX_SECONDS:g} s, or when the cell collapses; such a "
                                "candidate keeps its generated structure, with the reason in its note. A crystal of "
                                f"more than {MAX_RELAX_ATOMS} atoms, or packed too densely, gets a static energy "
                                "instead (a relaxation needs ~35 MB per atom).")
    if e3.button("Compute energies", disabled=n_valid == 0):
        todo = [c for c in cands if c.valid_structure][:max_e]
        refs, refs_source = refs_and_source(potential)
        (st.info if refs is None else st.caption)(sentence(refs_source))
        prov = st.session_state.get("mat_prov") or Provenance.now("unknown", "", {})
        runs = [*prov.settings.get("energy_runs", []), {"potential": pot, "relaxed": do_relax, "candidates": max_e}]
        prov = dataclasses.replace(prov, settings={**prov.settings, "energy_runs": runs})
        with heavy_step("materials.energies", f"{pot} energies{' after relaxing' if do_relax else ''} of "
                        f"{len(todo)} candidates", {"potential": pot, "relax": do_relax, "candidates": len(todo),
                                                    "model": prov.model}) as run:
            bar = st.progress(0.0, text=f"{pot}...")
            done = engine.run(energies_job, todo, potential, ion_value, relax=do_relax,
                              callbacks={"progress": lambda i, t: bar.progress(i / t, text=f"{pot} {i}/{t}")})
            # The worker filled copies: put them where the table and the run store look.
            by_id = {id(c): k for k, c in enumerate(cands)}
            for old, new in zip(todo, done, strict=True):
                cands[by_id[id(old)]] = new
            todo = done
            bar.empty()
            save_candidates(run, cands, st.session_state.get("mat_tally"), prov)
        saved_note(run)
        st.session_state["mat_prov"] = prov
        if failed := [c for c in todo if math.isnan(c.e_per_atom)]:
            st.warning(f"{len(failed)} of {len(todo)} candidates got no energy (reason in the table's note column): "
                       + "; ".join(f"{c.structure.composition.reduced_formula}: {c.note}" for c in failed[:3])
                       + ("; ..." if len(failed) > 3 else ""))
        if refs is not None and (uncovered := [c for c in todo if math.isfinite(c.e_per_atom)
                                               and math.isnan(c.e_above_hull)]):
            st.info(f"{len(uncovered)} of {len(todo)} candidates have no E_hull: the reference phases do not cover "
                    "their chemical system (" + "; ".join(f"{c.structure.composition.reduced_formula}: {c.note}"
                                                         for c in uncovered[:3])
                    + ("; ..." if len(uncovered) > 3 else "") + ").")
    st.caption(f"E_hull: {pot} energy vs the lower hull of MP-20 phases of the same chemical system, all with "
               f"static {pot} energies (elements referenced to their lowest-energy MP-20 phase; energies on MP's "
               "MP2020-corrected scale: CHGNet learnt it, SevenNet-0 gets the corrections added). Stable means "
               f"E_hull < 0.1 eV/atom. Voltage: {pot} energies of the candidate and of the same cell with the working "
               f"ion removed (unrelaxed), vs the {pot}-relaxed metal. The potential of each run is recorded in the "
               "downloads' provenance.")

table = pd.DataFrame([c.row() for c in cands])
contact_help = ("Closest two atoms over the sum of their atomic radii; real MP-20 crystals sit at about 0.7 or "
                f"more. With resampling, generated ones below {MIN_CONTACT_RATIO:g} are rejected (their atoms overlap; "
                "measured in docs/BENCHMARKS.md).")
selection = st.dataframe(table, width="stretch", on_select="rerun", selection_mode="multi-row", key="mat_table",
                         column_config={"contact_ratio": st.column_config.NumberColumn(
                             "closest contact", help=contact_help, format="%.2f")})
rows = list(selection.selection.rows) if selection else []


def save_dft(run, dft: list[dict]) -> None:
    prov = st.session_state.get("mat_prov") or Provenance.now("unknown", "", {})
    save_candidates(run, cands, st.session_state.get("mat_tally"), prov, dft)


dft_panel(cands, rows, potential, pot, save_dft)

plot = table.assign(index=range(len(table)), new=table.new.astype(str))
has_hull = plot.e_above_hull.notna().any()
x = "e_above_hull" if has_hull else "n_atoms"
y = "voltage" if plot.voltage.notna().any() else ("capacity_mAh_g" if plot.capacity_mAh_g.notna().any()
                                                  else "sg_found")
fig = px.scatter(plot, x=x, y=y, color="new", hover_name="formula", custom_data=["index"],
                 title=f"Candidates: {y} vs {x} (choose a point to view it)")
fig.update_layout(height=360, margin={"l": 40, "r": 10, "t": 40, "b": 40})
picked = st.plotly_chart(fig, width="stretch", on_select="rerun", key="mat_scatter")
points = picked.selection.points if picked else []
default = int(points[0]["customdata"][0]) if points else (rows[0] if rows else 0)

labels = [f"{i}: {c.formula} (SG {c.spacegroup_found}, {len(c.structure)} atoms)" for i, c in enumerate(cands)]
chosen = st.selectbox("Candidate to view", range(len(cands)), index=default, format_func=labels.__getitem__)
cand = cands[chosen]
v1, v2, v3 = st.columns(3)
sc = v1.slider("Supercell", 1, 3, 1)
style = v2.selectbox("Style", STYLES)
show_labels = v3.checkbox("Labels", value=False)
left, right = st.columns(2)
with left:
    st.markdown(f"**{cand.formula}** ({cand.source}), space group found {cand.spacegroup_found}")
    show_structure(cand.structure, supercell=(sc, sc, sc), style=style, labels=show_labels)
with right:
    known = get_known() if cand.novel is not None else None
    # StructureMatcher against every known polymorph costs seconds on a big crystal: once per candidate, not per rerun.
    cached = st.session_state.get("mat_near")
    if cached is None or cached[0] is not cand:
        cached = (cand, nearest_known(cand.structure, known) if known else None)
        st.session_state["mat_near"] = cached
    near = cached[1]
    if near is None:
        st.markdown("**Nearest known structure:** no known phase of the same formula.")
    else:
        st.markdown(f"**Nearest known structure:** {near.composition.reduced_formula} "
                    + (f"(identical: {cand.known_match})" if cand.novel is False
                       else "(same formula, different structure)"))
        show_structure(near, supercell=(sc, sc, sc), style=style, labels=show_labels)

prov = st.session_state.get("mat_prov") or Provenance.now("unknown", "", {})
d1, d2 = st.columns(2)
with d1:
    download_bundle(f"Download {cand.formula} (CIF + provenance)", cif_files(cands, [chosen]), prov,
                    f"{cand.formula}.zip", key="mat_dl_one")
with d2:
    chosen_rows = rows or [i for i, c in enumerate(cands) if c.valid_structure] or list(range(len(cands)))
    files = cif_files(cands, chosen_rows)
    files["checks.csv"] = table.iloc[chosen_rows].to_csv(index=False).encode()
    label = "selected rows" if rows else "all valid candidates"
    download_bundle(f"Download {len(chosen_rows)} {label} (zip)", files, prov, "candidates.zip", key="mat_dl_all")
