"""Microstructure page: enhance electrode images, segment and measure them, generate new ones."""

from __future__ import annotations

import numpy as np
import streamlit as st

from battgai.data import DataNotFound
from battgai.microstructure import io as msio
from battgai.microstructure import pipeline
from battgai.provenance import Provenance
from battgai.uploads import UploadError, read_image
from components.curve_plot import Curve, show_curves
from components.download import download_bundle
from components.image_compare import compare_figure
from components.volume_view import histogram_figure, image_figure, labels_figure, volume_figure

TASKS = {
    "Denoise": "denoise",
    "Super-resolution x2": "sr_x2",
    "Super-resolution x4": "sr_x4",
    "Segment + measure": "segment",
    "Generate a microstructure": "generate",
}
NMC_NAMES = {0: "pore", 1: "NMC", 2: "CBD"}


@st.cache_data(show_spinner=False)
def sample(name: str) -> np.ndarray:
    return msio.load_sample(name)


@st.cache_data(show_spinner=False)
def demo(kind: str) -> np.ndarray:
    return msio.demo_image((256, 256)) if kind == "image" else msio.demo_labels((64, 64, 64))


def progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda done, total: bar.progress(done / total, text=f"{text} {done}/{total}"))


def pick_input() -> tuple[np.ndarray, str, bool] | None:
    """Widgets for the input; returns (image, description, is_labels) or None after an error."""
    source = st.radio("Input", ["Bundled sample", "Upload", "Synthetic demo"], horizontal=True, key="source")
    if source == "Upload":
        up = st.file_uploader("PNG or TIFF (8 / 16-bit or float; multi-page TIFF for a stack)",
                              type=["png", "tif", "tiff"], key="upload")
        if up is None:
            st.info("Upload an image, or pick a bundled sample.")
            return None
        try:
            img = read_image(up.getvalue())
        except UploadError as exc:
            st.error(str(exc))
            return None
        if float(np.ptp(img)) == 0.0:
            st.error("The image is constant (every pixel has the same value); there is nothing to enhance or segment.")
            return None
        is_labels = np.unique(img[:: max(1, img.size // 100_000)]).size <= 4
        return img, f"upload {up.name}", is_labels
    if source == "Bundled sample":
        name = st.selectbox("Sample", list(msio.SAMPLES), key="sample")
        try:
            return sample(name), name, msio.SAMPLES[name].kind == "labels"
        except DataNotFound:
            st.info("The shared data folder is not present (set BATTGAI_DATA_DIR); showing the synthetic demo.")
    kind = st.radio("Demo", ["2D grey image", "3D segmented volume"], horizontal=True, key="demo_kind")
    if kind == "2D grey image":
        return demo("image"), "synthetic demo image (made by battgai, not real data)", False
    return demo("volume"), "synthetic demo volume (made by battgai, not real data)", True


def show_stack_slice(image: np.ndarray, key: str) -> int:
    if image.ndim == 3:
        return st.slider("Slice", 0, image.shape[0] - 1, image.shape[0] // 2, key=key)
    return 0


def run_enhance(image: np.ndarray, task: str, desc: str) -> None:
    whole = True
    if image.ndim == 3:
        whole = st.toggle(f"Process the whole stack ({image.shape[0]} slices)", value=False, key="whole_stack")
    if st.button("Run", type="primary", key="run_enhance"):
        chosen = image if whole or image.ndim == 2 else image[st.session_state.get("slice_in", 0)][None]
        bar, cb = progress_bar("Processing slice")
        try:
            st.session_state["enhance"] = (pipeline.enhance(chosen, task, progress=cb), desc)
        except ValueError as exc:
            st.error(str(exc))
        bar.empty()
    stored = st.session_state.get("enhance")
    if stored is None or stored[0].task != task or stored[1] != desc:
        return
    res = stored[0]
    k = show_stack_slice(res.after, "slice_out")
    before = res.before[k] if res.before.ndim == 3 else res.before
    after = res.after[k] if res.after.ndim == 3 else res.after
    st.caption(f"{res.model} · {res.seconds:.2f} s · {before.shape} -> {after.shape}")
    st.plotly_chart(compare_figure(before, after, ("input", "result")), width="stretch")
    st.plotly_chart(histogram_figure({"input": before, "result": after}), width="stretch")
    st.dataframe(res.table, hide_index=True)
    prov = Provenance.now(res.model, res.sha256, {"task": task, "input": desc, "shape": list(res.before.shape)})
    download_bundle("Download result (TIFF + PNG + metrics CSV + provenance)",
                    {"result.tif": pipeline.to_tiff(res.after), "result_slice.png": pipeline.to_png(after),
                     "metrics.csv": pipeline.to_csv(res.table)}, prov, f"battgai_{task}.zip", key="dl_enhance")


def run_segment(image: np.ndarray, is_labels: bool, desc: str) -> None:
    thresholds = None
    if not is_labels:
        classes = st.slider("Phases", 2, 4, 3, key="classes")
        try:
            auto = pipeline.segment.multiotsu_thresholds(image, classes)
        except ValueError as exc:
            st.error(str(exc))
            return
        thresholds = st.slider("Thresholds (multi-Otsu start; drag to adjust)", 0.0, 1.0,
                               tuple(float(round(t, 3)) for t in auto), step=0.005, key=f"thr_{classes}")
        if len(set(thresholds)) < len(thresholds):
            st.error("Thresholds must be distinct.")
            return
        st.plotly_chart(histogram_figure({"input": msio.to_float(image)}, thresholds=tuple(thresholds)),
                        width="stretch")
    else:
        st.caption("The input is already segmented: its distinct values are taken as phases.")
    tort = st.checkbox("Tortuosity factor per axis (slow: TauFactor, ~20 s per phase and axis at 64^3)",
                       value=False, key="tort")
    max_side = 48
    if tort:
        max_side = st.select_slider("Tortuosity crop (max side)", [32, 48, 64, 96, 128], 48, key="tort_side")
    if st.button("Segment and measure", type="primary", key="run_segment"):
        bar, cb = progress_bar("Measuring phase")
        try:
            st.session_state["segment"] = (pipeline.segment_and_measure(
                image, classes=len(thresholds) + 1 if thresholds else 3, thresholds=list(thresholds or []) or None,
                is_labels=is_labels, with_tortuosity=tort, max_side=max_side, progress=cb), desc)
        except ValueError as exc:
            st.error(str(exc))
        bar.empty()
    stored = st.session_state.get("segment")
    if stored is None or stored[1] != desc:
        return
    res = stored[0]
    names = NMC_NAMES if is_labels and int(res.labels.max()) <= 2 else None
    for note in res.notes:
        st.warning(note)
    k = show_stack_slice(res.labels, "slice_seg")
    img_k = res.image[k] if res.image.ndim == 3 else res.image
    lab_k = res.labels[k] if res.labels.ndim == 3 else res.labels
    st.plotly_chart(compare_figure(img_k, lab_k.astype(np.float32), ("input", "phases (zoom linked)")),
                    width="stretch")
    table = pipeline.phase_table(res.phases, names)
    st.dataframe(table, hide_index=True)
    c1, c2 = st.columns(2)
    with c1:
        show_curves([Curve(r, s, (names or {}).get(p, f"phase {p}")) for p, (r, s) in res.s2.items()],
                    "distance r (px)", "two-point correlation S2(r)")
    with c2:
        show_curves([Curve(r, f, (names or {}).get(p, f"phase {p}")) for p, (r, f) in res.sizes.items()],
                    "local thickness radius (px)", "volume fraction")
    if res.labels.ndim == 3:
        # NMC is phase 1 in segmented NMC data; after thresholding a CT image it is the brightest phase.
        shown = (1,) if names else (int(res.labels.max()),)
        st.plotly_chart(volume_figure(res.labels, names, phases=shown), width="stretch")
    prov = Provenance.now("multi-Otsu" if not is_labels else "given labels", "",
                          {"input": desc, "thresholds": list(res.thresholds), "tortuosity": tort})
    download_bundle("Download labels (TIFF + PNG) + metrics CSV + provenance",
                    {"labels.tif": pipeline.to_tiff(res.labels), "labels_slice.png": pipeline.to_png(lab_k),
                     "metrics.csv": pipeline.to_csv(table)}, prov, "battgai_segmentation.zip", key="dl_seg")


def run_generate() -> None:
    c1, c2, c3 = st.columns(3)
    porosity = c1.slider("Target porosity", 0.2, 0.7, 0.45, 0.01, key="gen_porosity")
    side = c2.select_slider("Size", [64, 96, 128, 192, 256], 64, key="gen_side")
    dims = c3.radio("Dimensions", ["3D", "2D"], horizontal=True, key="gen_dims")
    seed = st.number_input("Seed", 0, 10_000, 0, key="gen_seed")
    if st.button("Generate", type="primary", key="run_generate"):
        with st.spinner("Sampling..."):
            shape = (side,) * (3 if dims == "3D" else 2)
            st.session_state["generate"] = pipeline.generate(porosity, shape, int(seed))
    res = st.session_state.get("generate")
    if res is None:
        st.caption("Generator: a Gaussian level-cut model fitted to the real TauFactor NMC volume "
                   "(see its model card); porespy blobs is the benchmark baseline.")
        return
    st.caption(f"{res.model} · {res.seconds:.2f} s · shape {res.labels.shape} · seed {res.seed}")
    for note in res.notes:
        st.info(note)
    k = show_stack_slice(res.labels, "slice_gen")
    lab_k = res.labels[k] if res.labels.ndim == 3 else res.labels
    st.plotly_chart(labels_figure(lab_k, NMC_NAMES), width="stretch")
    table = pipeline.phase_table(res.phases, NMC_NAMES)
    st.dataframe(table, hide_index=True)
    if res.labels.ndim == 3:
        st.plotly_chart(volume_figure(res.labels, NMC_NAMES, phases=(1,)), width="stretch")
    prov = Provenance.now(res.model, res.sha256, {"porosity": res.porosity, "shape": list(res.labels.shape)},
                          seed=res.seed)
    download_bundle("Download volume (TIFF) + metrics CSV + provenance",
                    {"generated_labels.tif": pipeline.to_tiff(res.labels), "slice.png": pipeline.to_png(lab_k),
                     "metrics.csv": pipeline.to_csv(table)}, prov, "battgai_generated.zip", key="dl_gen")


st.title("Microstructure enhancement and synthesis")
st.write("Denoise and super-resolve electrode images, segment them and measure each phase, or generate "
         "new NMC microstructures at a chosen porosity. Nothing runs until you press a button.")
task = TASKS[st.radio("Task", list(TASKS), horizontal=True, key="task")]

if task == "generate":
    run_generate()
else:
    picked = pick_input()
    if picked is not None:
        image, desc, is_labels = picked
        st.caption(f"{desc} · shape {image.shape} · {image.dtype} · range {image.min():.4g} to {image.max():.4g}")
        if task in ("denoise", "sr_x2", "sr_x4"):
            if is_labels:
                st.warning("This input looks segmented (few distinct values): enhancement nets are meant for "
                           "grey-level images.")
            k = show_stack_slice(image, "slice_in")
            stored = st.session_state.get("enhance")
            if stored is None or stored[0].task != task or stored[1] != desc:
                shown = msio.to_float(image[k] if image.ndim == 3 else image)
                st.plotly_chart(image_figure(shown), width="stretch")
            run_enhance(image, task, desc)
        else:
            run_segment(image, is_labels, desc)
