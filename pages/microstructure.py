"""Microstructure page: enhance electrode images, segment and measure them, generate new ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

from battgai.core import engine
from battgai.core.data import DataNotFound
from battgai.core.provenance import Provenance
from battgai.microstructure import io as msio
from battgai.microstructure import pipeline
from battgai.microstructure.analysis.segment import multiotsu_thresholds
from battgai.microstructure.enhancement import guard, selffit
from battgai.uploads import MAX_PIXELS, MAX_UPLOAD_MB, read_image
from battgai.uploads.errors import UploadError, quoted
from components.curve_plot import Curve, show_curves
from components.deep_link import through_app
from components.download import bundle
from components.image_compare import compare_figure
from components.run_job import heavy_step, reopened, reopened_banner, saved_note
from components.volume_view import histogram_figure, image_figure, labels_figure, volume_figure

through_app()

TASKS = {
    "Denoise": "denoise",
    "Super-resolution x2": "sr_x2",
    "Super-resolution x4": "sr_x4",
    "Segment + measure": "segment",
    "Generate a microstructure": "generate",
    "Fuse 2D + 3D (high-resolution volume)": "fusion",
}
NMC_NAMES = {0: "pore", 1: "NMC", 2: "CBD"}
#: The denoising methods a researcher can force, by the label the page shows.
DENOISE_METHODS = {"Automatic (picked on the image)": guard.AUTO, "Bundled denoiser": guard.MODEL_METHOD,
                   "Non-local means": guard.CLASSICAL[0], "Total variation": guard.CLASSICAL[1],
                   "Phase levels (segmented-like images)": guard.PHASE_LEVELS, "Keep the input": guard.NONE}
GENERATORS = {"Level-cut model (default, closest to the held-out data)": "microstructure_generator",
              "SliceGAN (small, CPU-trained)": "microstructure_slicegan"}


@st.cache_data(show_spinner=False)
def sample(name: str) -> np.ndarray:
    return msio.load_sample(name)


@st.cache_data(show_spinner=False)
def demo(kind: str) -> np.ndarray:
    return msio.demo_image((256, 256)) if kind == "image" else msio.demo_labels((64, 64, 64))


def progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda done, total: bar.progress(done / total, text=f"{text} {done}/{total}"))


def enhance_progress(image: np.ndarray):
    """The bar of an enhancement: a stack is counted in slices (the nets count batches of tiles, more often)."""
    slices = image.shape[0] if image.ndim == 3 else 0
    bar = st.progress(0.0, text="Enhancing")

    def update(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Enhancing {'slice ' if total == slices else ''}{done}/{total}")

    return bar, update


def pick_input() -> tuple[np.ndarray, str, bool] | None:
    """Widgets for the input; returns (image, description, is_labels) or None after an error."""
    source = st.radio("Input", ["Bundled sample", "Upload", "Synthetic demo"], horizontal=True, key="source")
    if source == "Upload":
        up = st.file_uploader(f"PNG or TIFF (8- to 16-bit, int16 CT or float; multi-page TIFF for a stack; at most "
                              f"{MAX_UPLOAD_MB} MB and {MAX_PIXELS:,} pixels or voxels, e.g. 4096 x 4096 or 320^3)",
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
        return img, f"upload {quoted(up.name)}", is_labels
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


def remember(run, key: str, desc: str, result, files: dict[str, bytes], prov: Provenance,
             names: dict[int, str] | None = None) -> None:
    """Save a result in the run store and keep it with its download zip, built once rather than on every rerun."""
    for name, data in files.items():
        run.write(name, data)
    run.set(provenance=prov)
    run.save_state({"key": key, "desc": desc, "result": result, "names": names})
    st.session_state[key] = {"desc": desc, "result": result, "zip": bundle(files, prov)}


def recall(key: str, desc: str):
    """The stored result of ``key`` if it was made from the input described by ``desc``."""
    stored = st.session_state.get(key)
    return stored if stored is not None and stored["desc"] == desc else None


def middle(array: np.ndarray) -> np.ndarray:
    return array[array.shape[0] // 2] if array.ndim == 3 else array


def download(label: str, stored: dict, file_name: str, key: str) -> None:
    st.download_button(label, data=stored["zip"], file_name=file_name, mime="application/zip", key=key)


def show_stack_slice(image: np.ndarray, key: str) -> int:
    if image.ndim == 3:
        return st.slider("Slice", 0, image.shape[0] - 1, image.shape[0] // 2, key=key)
    return 0


def run_enhance(image: np.ndarray, task: str, desc: str, k: int) -> None:
    whole = True
    if image.ndim == 3:
        whole = st.toggle(f"Process the whole stack ({image.shape[0]} slices)", value=False, key="whole_stack")
    fit = task == "denoise" and st.checkbox(
        f"Fit the denoiser to this image first (Noise2Void, self-supervised: about {selffit.PAGE_SECONDS:.0f} s more)",
        key="fit_denoiser", help="A copy of the bundled denoiser is trained on this image alone, to predict each "
        "pixel from its neighbours (no clean image needed). It is used only if it scores better on the image than "
        "the bundled denoiser and the classical methods; its weights are saved with the run.")
    method = guard.AUTO
    if task == "denoise":
        methods = DENOISE_METHODS | ({"Denoiser fitted to this image": guard.FITTED_METHOD} if fit else {})
        method = methods[st.selectbox("Denoising method", list(methods), key="denoise_method",
                                      help="Automatic keeps the input unless a method is estimated to improve it. "
                                      "A forced method is used as it is; the estimates are still shown.")]
    desc = (f"{task} of {desc}" + ("" if whole else f", slice {k}") + (", fitted" if fit else "")
            + ("" if method == guard.AUTO else f", method {method}"))
    if st.button("Run", type="primary", key="run_enhance"):
        chosen = image if whole else image[k][None]
        try:
            with heavy_step("microstructure.enhance", desc, {"task": task, "shape": list(chosen.shape)}) as run:
                fit_bar, fit_cb = progress_bar("Fitting to the image (tenths of a second)") if fit else (None, None)
                bar, cb = enhance_progress(chosen)
                res = engine.run(pipeline.enhance, chosen, task, fit_seconds=selffit.PAGE_SECONDS if fit else 0.0,
                                 method=method, callbacks={"progress": cb, **({"fit_progress": fit_cb} if fit else {})})
                bar.empty()
                if fit_bar is not None:
                    fit_bar.empty()
                prov = Provenance.now(res.model, res.sha256, enhance_settings(res, desc))
                files = {"result.tif": pipeline.to_tiff(res.output),
                         "result_middle_slice.png": pipeline.to_png(middle(res.after)),
                         "metrics.csv": pipeline.to_csv(res.table)}
                if res.fitted_weights is not None:
                    files["fitted_denoiser.safetensors"] = pipeline.weights_bytes(res.fitted_weights)
                remember(run, "enhance", desc, res, files, prov)
        except ValueError as exc:
            st.error(str(exc))
        else:
            saved_note(run)
    stored = recall("enhance", desc)
    if stored is None:
        st.plotly_chart(image_figure(msio.to_float(image[k] if image.ndim == 3 else image)), width="stretch")
        return
    show_enhanced(stored)


def enhance_settings(res: pipeline.EnhanceResult, desc: str) -> dict:
    """Provenance settings of an enhancement: the method actually used and why."""
    settings: dict = {"task": res.task, "input": desc, "shape": list(res.before.shape),
                      "input_dtype": str(res.output.dtype), "method": res.method}
    if res.decision is not None:
        settings["scores"] = {"what": res.decision.score_name,
                              "values": {s.method: round(s.est_gain_db, 2) for s in res.decision.scores}}
    if res.task == "denoise":
        d = res.decision
        settings |= {"method_forced_by_user": d.forced, "automatic_choice": d.automatic,
                     "noise_sigma": round(d.noise_sigma, 5), "noise_correlation_px": round(d.noise_correlation_px, 2),
                     "segmented_levels": d.levels, "residual_lag1_correlation": round(res.residual_correlation, 3)}
    if res.fit_report is not None:
        r = res.fit_report
        settings["fit"] = {"method": "Noise2Void fine-tuning of the bundled denoiser", "steps": r.steps,
                           "seconds": round(r.seconds, 1), "blind_spot_loss": [round(r.loss_start, 5),
                                                                               round(r.loss_end, 5)],
                           "config": dataclasses.asdict(r.config), "weights": "fitted_denoiser.safetensors"}
    return settings


def show_decision(res: pipeline.EnhanceResult, before: np.ndarray, after: np.ndarray) -> None:
    """What the denoising found and chose, the residual image and whether it looks like noise."""
    d = res.decision
    forced = " (forced by you)" if d.forced else ""
    (st.info if d.in_model_domain else st.warning)(" ".join(d.notes) + f" Method used: **{d.method}**{forced}.")
    if d.scores:
        st.dataframe([{"method": s.method, d.score_name: round(s.est_gain_db, 2), "used": s.method == d.method,
                       "automatic choice": s.method == (d.automatic or d.method)} for s in d.scores], hide_index=True)
        if res.task == "denoise" and d.noise_correlation_px > 0:
            st.caption("Estimated on the image itself by SURE for correlated noise: each method's change to the "
                       "image and its response to a small noise-like probe estimate its error against the clean "
                       "image.")
        elif res.task == "denoise":
            st.caption("Estimated on the image itself: each method predicts every pixel of the central crop "
                       "without seeing it (Noise2Self); its error against the noisy image minus the noise variance "
                       "estimates its error against the clean image.")
    if res.fit_report is not None:
        r = res.fit_report
        st.caption(f"Fitted to this image: {r.steps} Noise2Void steps in {r.seconds:.0f} s, blind-spot loss "
                   f"{r.loss_start:.5f} -> {r.loss_end:.5f}. The fitted weights are in the download.")
    if d.method == guard.NONE or res.task != "denoise":
        return
    residual = before - after
    st.plotly_chart(image_figure(np.clip(0.5 + residual / max(4 * d.noise_sigma, 1e-6), 0, 1)), width="stretch")
    rc, limit = res.residual_correlation, guard.residual_structure_threshold(d)
    noise_rc = f"about {limit - guard.RESIDUAL_STRUCTURE:.2f}"
    if rc > limit:
        st.warning(f"Residual (input - result, grey = 0): it holds structure, not only noise (neighbouring pixels "
                   f"correlate at {rc:.2f}; removed noise gives {noise_rc}). Look at it before you trust fine detail.")
    else:
        st.caption(f"Residual (input - result, grey = 0): it looks like noise (neighbouring pixels correlate at "
                   f"{rc:.2f}; {noise_rc} for removed noise, higher when structure was removed).")


def show_enhanced(stored: dict, names: dict[int, str] | None = None) -> None:
    res = stored["result"]
    task = res.task
    j = show_stack_slice(res.after, "slice_out")
    before = res.before[j] if res.before.ndim == 3 else res.before
    after = res.after[j] if res.after.ndim == 3 else res.after
    st.caption(f"{res.method} · {res.seconds:.2f} s · {before.shape} -> {after.shape}")
    if res.decision is not None:
        show_decision(res, before, after)
    st.plotly_chart(compare_figure(before, after, ("input", "result")), width="stretch")
    st.plotly_chart(histogram_figure({"input": before, "result": after}), width="stretch")
    st.caption("Table: central slice, central crop of at most 512 input pixels; the input's multi-Otsu "
               "thresholds are applied to both images.")
    st.dataframe(res.table, hide_index=True)
    download("Download result (TIFF in the input's dtype and scale + PNG + metrics CSV + provenance)", stored,
             f"battgai_{task}.zip",
             "dl_enhance")


def run_segment(image: np.ndarray, is_labels: bool, desc: str, k: int) -> None:
    as_volume = True
    if image.ndim == 3:
        as_volume = st.checkbox("Measure the stack as one 3D volume (off: the current slice only)",
                                value=image.shape[0] >= 16, key=f"as_volume_{desc}")
        image = image if as_volume else image[k]
    desc = f"{desc}" + ("" if as_volume else f", slice {k}")
    thresholds = None
    if not is_labels:
        classes = st.slider("Phases", 2, 4, 3, key="classes")
        try:
            auto = multiotsu_thresholds(image, classes)
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
    tort = st.checkbox("Tortuosity factor per axis (slow: TauFactor, seconds to minutes per phase and axis)",
                       value=False, key="tort")
    max_side = 48
    if tort:
        max_side = st.select_slider("Tortuosity crop (max side)", [32, 48, 64, 96, 128], 48, key="tort_side")
    # Bundled and demo label data are pore / NMC / CBD; an upload's phases stay numbered.
    names = NMC_NAMES if is_labels and not desc.startswith("upload") else None
    if st.button("Segment and measure", type="primary", key="run_segment"):
        try:
            with heavy_step("microstructure.segment", f"segment {desc}",
                            {"tortuosity": tort, "shape": list(image.shape)}) as run:
                bar, cb = progress_bar("Measuring phase")
                res = engine.run(
                    pipeline.segment_and_measure, image, classes=len(thresholds) + 1 if thresholds else 3,
                    thresholds=list(thresholds or []) or None, is_labels=is_labels, with_tortuosity=tort,
                    max_side=max_side, callbacks={"progress": cb})
                bar.empty()
                table = pipeline.phase_table(res.phases, names)
                prov = Provenance.now("multi-Otsu" if not is_labels else "given labels", "",
                                      {"input": desc, "thresholds": list(res.thresholds), "tortuosity": tort,
                                       "tortuosity_max_side": max_side, "notes": list(res.notes)})
                remember(run, "segment", desc, (res, table), {
                    "labels.tif": pipeline.to_tiff(res.labels),
                    "labels_middle_slice.png": pipeline.to_png(middle(res.labels)),
                    "metrics.csv": pipeline.to_csv(table)}, prov, names)
        except ValueError as exc:
            st.error(str(exc))
        else:
            saved_note(run)
    stored = recall("segment", desc)
    if stored is None:
        return
    show_segmented(stored, names)


def show_segmented(stored: dict, names: dict[int, str] | None = None) -> None:
    res, table = stored["result"]
    for note in res.notes:
        st.warning(note)
    j = show_stack_slice(res.labels, "slice_seg")
    img_j = res.image[j] if res.image.ndim == 3 else res.image
    lab_j = res.labels[j] if res.labels.ndim == 3 else res.labels
    st.plotly_chart(compare_figure(img_j, lab_j.astype(np.float32), ("input", "phases (zoom linked)")),
                    width="stretch")
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
    download("Download labels (TIFF + PNG) + metrics CSV + provenance", stored, "battgai_segmentation.zip", "dl_seg")


def run_generate() -> None:
    c1, c2, c3 = st.columns(3)
    porosity = c1.slider("Target porosity", 0.2, 0.7, 0.45, 0.01, key="gen_porosity")
    side = c2.select_slider("Size", [64, 96, 128, 192, 256], 64, key="gen_side")
    dims = c3.radio("Dimensions", ["3D", "2D"], horizontal=True, key="gen_dims")
    c4, c5 = st.columns([2, 1])
    model_name = GENERATORS[c4.radio("Generator", list(GENERATORS), key="gen_model")]
    seed = c5.number_input("Seed", 0, 10_000, 0, key="gen_seed")
    if st.button("Generate", type="primary", key="run_generate"):
        shape = (side,) * (3 if dims == "3D" else 2)
        with heavy_step("microstructure.generate", f"{model_name} at porosity {porosity:.2f}, {shape}",
                        {"porosity": porosity, "shape": list(shape), "seed": int(seed), "model": model_name}
                        ) as run, st.spinner("Sampling..."):
            res = engine.run(pipeline.generate, porosity, shape, int(seed), model_name)
            table = pipeline.phase_table(res.phases, NMC_NAMES)
            prov = Provenance.now(res.model, res.sha256, {"porosity": res.porosity, "shape": list(shape)},
                                  seed=res.seed)
            remember(run, "generate", "generator", (res, table), {
                "generated_labels.tif": pipeline.to_tiff(res.labels),
                "middle_slice.png": pipeline.to_png(middle(res.labels)),
                "metrics.csv": pipeline.to_csv(table)}, prov, NMC_NAMES)
        saved_note(run)
    stored = recall("generate", "generator")
    if stored is None:
        st.caption("Level-cut model: a Gaussian level cut fitted to the real TauFactor NMC volume. SliceGAN: "
                   "a small 3D GAN trained on 2D slices of the same data; it hits the porosity by shifting the "
                   "pore logit. On held-out data its two-point correlation is closer but its pore surface area "
                   "and tortuosity are much further off than the level cut's (docs/BENCHMARKS.md). porespy "
                   "blobs is the benchmark baseline. See the model cards.")
        return
    show_generated(stored)


def show_generated(stored: dict, names: dict[int, str] | None = None) -> None:
    res, table = stored["result"]
    st.caption(f"{res.model} · {res.seconds:.2f} s · shape {res.labels.shape} · seed {res.seed}")
    for note in res.notes:
        st.info(note)
    j = show_stack_slice(res.labels, "slice_gen")
    st.plotly_chart(labels_figure(res.labels[j] if res.labels.ndim == 3 else res.labels, NMC_NAMES),
                    width="stretch")
    st.dataframe(table, hide_index=True)
    if res.labels.ndim == 3:
        st.plotly_chart(volume_figure(res.labels, NMC_NAMES, phases=(1,)), width="stretch")
    download("Download volume (TIFF + PNG) + metrics CSV + provenance", stored, "battgai_generated.zip", "dl_gen")


def fusion_inputs() -> tuple[np.ndarray, np.ndarray, float | None, float | None, str] | None:
    """Widgets for the two fusion inputs: (low-res volume, high-res 2D image, their phase values, description)."""
    source = st.radio("Inputs", ["Bundled sample", "Upload", "Synthetic demo"], horizontal=True, key="fuse_source")
    if source == "Upload":
        c1, c2 = st.columns(2)
        up3 = c1.file_uploader(f"Low-resolution 3D volume (multi-page TIFF; at most {MAX_UPLOAD_MB} MB)",
                               type=["tif", "tiff"], key="fuse_lr")
        up2 = c2.file_uploader("High-resolution 2D image of the same material (PNG / TIFF)",
                               type=["png", "tif", "tiff"], key="fuse_hr")
        if up3 is None or up2 is None:
            st.info("Upload both: the low-resolution volume and the high-resolution 2D image.")
            return None
        try:
            lr, hr = read_image(up3.getvalue()), read_image(up2.getvalue())
        except UploadError as exc:
            st.error(str(exc))
            return None
        if lr.ndim != 3 or hr.ndim != 2:
            st.error(f"Need a 3D stack and a 2D image; got shapes {lr.shape} and {hr.shape}.")
            return None
        desc = f"{quoted(up3.name)} + {quoted(up2.name)}"
    elif source == "Bundled sample":
        try:
            lr, hr = sample_fusion()
        except DataNotFound:
            st.info("The shared data folder is not present (set BATTGAI_DATA_DIR); use the synthetic demo.")
            return None
        desc = "TauFactor NMC: 32^3 block average of a 128^3 region + a 256^2 slice from elsewhere"
    else:
        lr, hr = demo_fusion()
        desc = "synthetic blobs (made by battgai, not real data)"
    values = {"low-resolution volume": lr, "2D image": hr}
    chosen: dict[str, float | None] = {}
    cols = st.columns(2)
    for col, (name, img) in zip(cols, values.items(), strict=True):
        levels = np.unique(img[:: max(1, img.size // 200_000)])
        if levels.size <= 4:
            chosen[name] = col.selectbox(f"Phase value in the {name}", levels.tolist(), key=f"fuse_val_{name}")
        else:
            col.caption(f"The {name} is grey: its bright phase (multi-Otsu) is fused.")
            chosen[name] = None
    return lr, hr, chosen["low-resolution volume"], chosen["2D image"], desc


@st.cache_data(show_spinner=False)
def sample_fusion() -> tuple[np.ndarray, np.ndarray]:
    from battgai.microstructure.generation.fusion import degrade

    labels = msio.phase_labels(msio.load_image(msio.TAUFACTOR_VOLUME))
    coarse = np.round(degrade(labels[-128:, 64:192, 64:192], 0, 4) * 255).astype(np.uint8)  # pore fraction
    return coarse, (labels[20] == 0).astype(np.uint8)


@st.cache_data(show_spinner=False)
def demo_fusion() -> tuple[np.ndarray, np.ndarray]:
    from battgai.microstructure.generation.fusion import demo_pair

    return demo_pair()


def run_fusion() -> None:
    picked = fusion_inputs()
    if picked is None:
        return
    lr, hr, lr_value, hr_value, desc = picked
    c1, c2 = st.columns(2)
    scale = c1.selectbox("Fine voxels per coarse voxel (per axis)", [2, 3, 4, 6, 8], index=2, key="fuse_scale",
                         help="The 2D image's pixel is taken as the fine voxel. Output at most 256^3 voxels.")
    tort = c2.checkbox("Tortuosity (3 axes, centre 64^3; ~10 s)", value=True, key="fuse_tort")
    st.caption(f"{desc} · volume {lr.shape} {lr.dtype} -> {tuple(s * scale for s in lr.shape)} · 2D image "
               f"{hr.shape}")
    key = f"{desc} x{scale} {lr_value} {hr_value}"
    if st.button("Fuse", type="primary", key="run_fusion"):
        try:
            with heavy_step("microstructure.fusion", f"fusion of {desc}", {"scale": scale, "shape": list(lr.shape)}
                            ) as run:
                bar, cb = progress_bar("Fitting the fine-scale field to the 2D image")
                res, table = engine.run(pipeline.fuse_and_measure, lr, hr, scale, lr_value, hr_value,
                                        with_tortuosity=tort, callbacks={"progress": cb})
                bar.empty()
                prov = Provenance.now("2D/3D statistical fusion (battgai.microstructure.generation.fusion)", "", {
                    "input": desc, "scale": scale, "lowres_phase_value": lr_value, "highres_phase_value": hr_value,
                    "field_width_voxels": res.width, "field_strength": round(res.strength, 4), "seed": res.seed})
                remember(run, "fusion", key, (res, table), {
                    "fused.tif": pipeline.to_tiff(res.volume.astype(np.uint8)),
                    "baseline_trilinear.tif": pipeline.to_tiff(res.baseline.astype(np.uint8)),
                    "metrics.csv": pipeline.to_csv(table)}, prov)
        except ValueError as exc:
            st.error(str(exc))
        else:
            saved_note(run)
    stored = recall("fusion", key)
    if stored is not None:
        show_fused(stored)


def show_fused(stored: dict, names: dict[int, str] | None = None) -> None:
    res, table = stored["result"]
    st.caption(f"Fitted in {res.seconds:.1f} s: fine-scale field width {res.width:g} voxels, strength "
               f"{res.strength:.3f}, to the 2D image's perimeter of {res.target_perimeter:.4f} per pixel; the "
               "volume fraction of the low-resolution volume is kept.")
    j = show_stack_slice(res.volume, "slice_fused")
    st.plotly_chart(compare_figure(res.baseline[j].astype(np.float32), res.volume[j].astype(np.float32),
                                   ("trilinear upsampling (baseline)", "fused with the 2D image")), width="stretch")
    st.dataframe(table, hide_index=True)
    st.caption("The baseline is the low-resolution volume upsampled trilinearly and cut at the same volume "
               "fraction: its interfaces are as smooth as the coarse voxels. The fused volume adds a fine-scale "
               "random field fitted so that its slices match the 2D image's perimeter and short-range "
               "correlation. Connections thinner than a coarse voxel (particle contacts) cannot be recovered.")
    download("Download fused volume (TIFF, 1 = phase) + baseline + metrics CSV + provenance", stored,
             "battgai_fusion.zip", "dl_fusion")


st.title("Microstructure enhancement and synthesis")
st.write("Denoise and super-resolve electrode images, segment them and measure each phase, fuse a low-resolution "
         "volume with a high-resolution 2D image, or generate "
         "new NMC microstructures at a chosen porosity. Nothing runs until you press a button.")
record = reopened("microstructure")
if record is not None:
    reopened_banner(record)
    state = record.state()
    show = {"enhance": show_enhanced, "segment": show_segmented, "generate": show_generated, "fusion": show_fused}
    show[state["key"]]({"desc": state["desc"], "result": state["result"], "zip": record.zip}, state["names"])
    st.stop()
task = TASKS[st.radio("Task", list(TASKS), horizontal=True, key="task")]

if task == "generate":
    run_generate()
elif task == "fusion":
    run_fusion()
else:
    picked = pick_input()
    if picked is not None:
        image, desc, is_labels = picked
        st.caption(f"{desc} · shape {image.shape} · {image.dtype} · range {image.min():.4g} to {image.max():.4g} · "
                   f"read as {msio.intensity_range(image).what}")
        k = show_stack_slice(image, "slice_in")
        if task in ("denoise", "sr_x2", "sr_x4"):
            if is_labels:
                st.warning("This input looks segmented (few distinct values): enhancement nets are meant for "
                           "grey-level images.")
            run_enhance(image, task, desc, k)
        else:
            run_segment(image, is_labels, desc, k)
