"""``python -m battgai.bench microstructure``: enhancement and generation, side by side with baselines.

Enhancement, on the held-out real images of :func:`battgai.microstructure.io.heldout_images`
with fixed, seeded degradations:

- SR x2 / x4 (blur sigma 0.5 LR px + binning) vs bicubic and vs skimage ``rescale(order=3)``
  followed by ``unsharp_mask``; PSNR / SSIM against the real high-resolution image.
- denoising (Poisson-Gaussian noise; noise + ring / streak / scan-line artefacts) vs
  ``skimage.restoration.denoise_nl_means`` (h = 0.8 sigma_est, the skimage recipe) and
  ``denoise_tv_chambolle``.
- time to upscale a 1024 x 1024 image x2 on the CPU.

Generation: :mod:`battgai.microstructure.generation.generator` (level cut) and
:mod:`battgai.microstructure.generation.slicegan` vs porespy ``blobs`` at the same porosity, on held-out real
crops (see :func:`generation_rows`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

import numpy as np

from battgai.microstructure.enhancement import degrade, evaluate, guard
from battgai.microstructure.enhancement.enhance import skimage_upscale
from battgai.microstructure.enhancement.evaluate import NOISE_CASES, lowres_pair, psnr_ssim

#: Marker name of the denoising-on-every-image-type block (``--part guard`` rewrites only it).
GUARD_BLOCK = "microstructure-guard"
FUSION_BLOCK = "microstructure-fusion"
GENERATOR_BLOCK = "microstructure-generator"
REFERENCE_BLOCK = "microstructure-generator-reference"
BITDEPTH_BLOCK = "microstructure-bitdepth"
LABELS_BLOCK = "microstructure-labels"
STACK_BLOCK = "microstructure-stack"


def nl_means(image: np.ndarray) -> np.ndarray:
    """skimage non-local means with the documented recipe: h = 0.8 sigma_est (skimage's wavelet estimate)."""
    from skimage.restoration import estimate_sigma

    return guard.non_local_means(image, float(estimate_sigma(image)))


def sr_rows(images: dict[str, np.ndarray], scale: int, model) -> list[tuple[str, str, float, float]]:
    """(image, method, PSNR, SSIM) for bicubic, skimage and the net at ``scale``."""
    from battgai.microstructure.enhancement.enhance import apply_model, bicubic

    rows = []
    for name, im in images.items():
        lr, hr = lowres_pair(im, scale)
        for method, fn in (("bicubic", lambda x: bicubic(x, scale)),
                           ("skimage rescale(order=3) + unsharp_mask", lambda x: skimage_upscale(x, scale)),
                           (f"battgai SR x{scale} (net)", lambda x: apply_model(x, model))):
            rows.append((name, method, *psnr_ssim(hr, fn(lr))))
    return rows


def denoise_rows(images: dict[str, np.ndarray], model) -> list[tuple[str, str, str, float, float]]:
    """(case, image, method, PSNR, SSIM) for the noisy input, NL-means, TV and the net."""
    from battgai.microstructure.enhancement.enhance import apply_model

    rows = []
    for case, degrade_fn in NOISE_CASES.items():
        for i, (name, im) in enumerate(images.items()):
            noisy = degrade_fn(im, np.random.default_rng(i))
            for method, fn in (("noisy input", lambda x: x), ("skimage denoise_nl_means", nl_means),
                               ("skimage denoise_tv_chambolle", guard.total_variation),
                               ("battgai denoiser (net)", lambda x: apply_model(x, model))):
                rows.append((case, name, method, *psnr_ssim(im, fn(noisy))))
    return rows


def label_sr_rows(scale: int, model) -> list[tuple[str, str, float, float, float]]:
    """Upscaled *label maps*: (image, method, mean IoU, max |volume fraction error|, mean |SSA rel. error|).

    The rendered held-out images are degraded and upscaled as in :func:`sr_rows`, then segmented
    with fixed thresholds half-way between the rendering grey levels and compared phase by phase
    with the true high-resolution labels (PSNR means little for label maps, ``shared/DESIGN.md``).
    The clean high-resolution render, segmented the same way, is the ceiling.
    """
    from battgai.microstructure import io
    from battgai.microstructure.analysis import segment
    from battgai.microstructure.enhancement.enhance import apply_model, bicubic
    from battgai.microstructure.enhancement.labels import label_scores

    levels = np.asarray(io.PHASE_LEVELS)
    order = np.argsort(levels)  # phase ids from darkest to brightest
    thresholds = 0.5 * (np.sort(levels)[1:] + np.sort(levels)[:-1])
    images = io.heldout_images()
    rows = []
    for name, labels in io.heldout_labels().items():
        lr, hr = lowres_pair(images[name], scale)
        truth = degrade.crop_to_multiple(labels, scale)
        for method, grey in (("bicubic", bicubic(lr, scale)), (f"battgai SR x{scale} (net)", apply_model(lr, model)),
                             ("clean high-res render (ceiling)", hr)):
            seg = order[segment.apply_thresholds(grey, thresholds)].astype(np.uint8)
            s = label_scores(seg, truth)
            rows.append((name, method, s["mean_iou"], s["max_vf_error"], s["mean_ssa_rel_error"]))
    return rows


def _means(rows: list[tuple], key: tuple[int, ...]) -> dict[tuple, tuple[float, float]]:
    """Mean (PSNR, SSIM) -- the last two columns -- of ``rows`` grouped by the columns ``key``."""
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[i] for i in key), []).append(r[-2:])
    return {k: (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs]))) for k, vs in groups.items()}


def time_upscale(model, side: int = 1024, repeats: int = 3) -> float:
    """Best wall time (s) of upscaling a ``side`` x ``side`` image with ``model``."""
    from battgai.microstructure.enhancement.enhance import apply_model

    image = np.random.default_rng(0).random((side, side), dtype=np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        apply_model(image, model)
        times.append(time.perf_counter() - t0)
    return min(times)


def tune_blobiness(train: np.ndarray, grid: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)) -> float:
    """Blobiness of the porespy baseline whose pore surface area best matches the *training* volume."""
    from battgai.microstructure.analysis import metrics
    from battgai.microstructure.generation import generator

    porosity = metrics.volume_fraction(train, 0)
    target = metrics.specific_surface_area(train, 0)
    errors = {}
    for b in grid:
        vol = generator.blobs_baseline(porosity, (96, 96, 96), b)
        errors[b] = abs(metrics.specific_surface_area(vol, 0) / target - 1)
    return min(errors, key=errors.get)


def generation_rows(n: int = 4, tau_crops: int = 2, seed: int = 0) -> tuple[list[tuple], dict[str, float]]:
    """Pore-phase metrics of real held-out crops vs the two generators vs porespy blobs, same porosity.

    Real: the four 128^3 crops of the held-out half (z >= 128) of the TauFactor volume. Each
    generator (level cut, SliceGAN, blobs) makes ``n`` 128^3 samples at the crops' mean porosity.
    Tortuosity (pore, three axes) on the central 64^3 of the first ``tau_crops`` volumes of each set, for time.

    Returns
    -------
    rows : list of (set, porosity, SSA, tau, S2 L1 gap to real)
    info : timing and tuned settings
    """
    from battgai.microstructure import io
    from battgai.microstructure.analysis import metrics
    from battgai.microstructure.generation import generator, slicegan

    test = io.real_volume("test")
    real = [test[:, y:y + 128, x:x + 128] for y in (0, 128) for x in (0, 128)]
    porosity = float(np.mean([metrics.volume_fraction(v, 0) for v in real]))
    model = generator.load()
    t0 = time.perf_counter()
    gen = [generator.sample(model, porosity, (128, 128, 128), seed=seed + i) for i in range(n)]
    gen_time = (time.perf_counter() - t0) / n
    gan_model = slicegan.load()
    t0 = time.perf_counter()
    gan = [slicegan.sample(gan_model, porosity, (128, 128, 128), seed=seed + i) for i in range(n)]
    gan_time = (time.perf_counter() - t0) / n
    blobiness = tune_blobiness(io.real_volume("train"))
    t0 = time.perf_counter()
    blobs = [generator.blobs_baseline(porosity, (128, 128, 128), blobiness, seed=seed + i) for i in range(n)]
    blob_time = (time.perf_counter() - t0) / n

    def s2(vols):
        return np.mean([metrics.two_point_correlation(v, 0, 32)[1] for v in vols], axis=0)

    s2_real = s2(real)
    rows = []
    for label, vols in (("real held-out crops", real), ("battgai level-cut generator", gen),
                        ("battgai SliceGAN", gan), (f"porespy blobs (blobiness {blobiness})", blobs)):
        taus = [metrics.tortuosity(v, 0, ax, max_side=64).tau for v in vols[:tau_crops] for ax in range(3)]
        rows.append((label,
                     float(np.mean([metrics.volume_fraction(v, 0) for v in vols])),
                     float(np.mean([metrics.specific_surface_area(v, 0) for v in vols])),
                     float(np.mean(taus)),
                     float(np.mean(np.abs(s2(vols) - s2_real)))))
    info = {"porosity": porosity, "gen_time_s": gen_time, "gan_time_s": gan_time, "blob_time_s": blob_time,
            "blobiness": blobiness}
    for phase, name in ((1, "nmc"), (2, "cbd")):
        real_ssa = float(np.mean([metrics.specific_surface_area(v, phase) for v in real]))
        for key, vols in (("gen", gen), ("gan", gan)):
            ssa = float(np.mean([metrics.specific_surface_area(v, phase) for v in vols]))
            info[f"{key}_{name}_ssa_rel_error"] = abs(ssa - real_ssa) / real_ssa
    return rows, info


def _check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m battgai.bench microstructure")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--part", choices=("all", "guard", "fusion", "generator", "generator-reference", "bitdepth",
                                           "labels", "stack"),
                        default="all",
                        help="guard: only the denoise / SR on every image type tables; fusion: only the 2D / 3D "
                             "fusion table; generator: only the every-statistic-at-once generator table; "
                             "generator-reference: only the generator under PoreSpy and TauFactor at 64^3 and 128^3 "
                             "(about 6 min); bitdepth: "
                             "only the same images at every bit depth; labels: only label images upscaled as labels; "
                             "stack: only every method on a stack at the upload limit (about 10 min); "
                             "each is replaced inside the section")
    args = parser.parse_args(argv)

    import torch

    from battgai.bench import block_markers, write_section, write_subsection
    from battgai.bench import microstructure_bitdepth as bitdepthbench
    from battgai.bench import microstructure_fusion as fusionbench
    from battgai.bench import microstructure_generator as genbench
    from battgai.bench import microstructure_guard as guardbench
    from battgai.bench import microstructure_labels as labelsbench
    from battgai.bench import microstructure_stack as stackbench
    from battgai.microstructure import io
    from battgai.microstructure.enhancement.enhance import MODEL_NAMES, apply_model, load_model

    torch.set_num_threads(1)
    parts = {GUARD_BLOCK: guardbench.report, FUSION_BLOCK: fusionbench.report, GENERATOR_BLOCK: genbench.report,
             REFERENCE_BLOCK: genbench.reference_report,
             BITDEPTH_BLOCK: bitdepthbench.report, LABELS_BLOCK: labelsbench.report, STACK_BLOCK: stackbench.report}
    if args.part != "all":
        block = {"guard": GUARD_BLOCK, "fusion": FUSION_BLOCK, "generator": GENERATOR_BLOCK,
                 "generator-reference": REFERENCE_BLOCK,
                 "bitdepth": BITDEPTH_BLOCK, "labels": LABELS_BLOCK, "stack": STACK_BLOCK}[args.part]
        md = parts[block]()
        print(md)
        if not args.no_write:
            write_subsection("microstructure", block, md)
        return
    blocks = []
    for name, report in parts.items():
        start, end = block_markers(name)
        blocks.append(f"{start}\n{report()}\n{end}")
    started = time.perf_counter()
    images = io.heldout_images()
    models = {k: load_model(v, device="cpu")[0] for k, v in MODEL_NAMES.items()}
    lines = [
        "Command: `python -m battgai.bench microstructure`  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} CPU, "
        f"{os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, 1 thread unless stated.  ",
        "Split: held-out region = columns 1536-2047 of the raw NMC811 X-ray slice (training used 0-1471); "
        "held-out images = Dahari `large_slice_nmc.tif` (centre 512^2) and `sem_image_half.tif` (512^2), "
        "rendered to grey; no training pixel comes from them. Generation: fitted on z < 128 of the TauFactor "
        "256^3 volume, measured on the four 128^3 crops of z >= 128.",
        "",
    ]
    summary = []
    for scale in (2, 4):
        rows = sr_rows(images, scale, models[scale])
        lines += [f"### Super-resolution x{scale} (blur sigma {evaluate.SR_BLUR} LR px + {scale}x{scale} binning)", "",
                  "| held-out image | method | PSNR dB | SSIM |", "|---|---|---|---|"]
        lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.4f} |" for r in rows]
        means = _means(rows, (1,))
        bic, net = means[("bicubic",)], means[(f"battgai SR x{scale} (net)",)]
        lines += [f"| **mean** | bicubic | {bic[0]:.2f} | {bic[1]:.4f} |",
                  f"| **mean** | skimage | {means[('skimage rescale(order=3) + unsharp_mask',)][0]:.2f} | "
                  f"{means[('skimage rescale(order=3) + unsharp_mask',)][1]:.4f} |",
                  f"| **mean** | net | {net[0]:.2f} | {net[1]:.4f} |", ""]
        if scale == 4:
            summary.append(f"SR x4 PSNR gain over bicubic {net[0] - bic[0]:+.2f} dB (target >= +2 dB: "
                           f"{_check(net[0] - bic[0] >= 2)}); SSIM {net[1]:.4f} vs {bic[1]:.4f} "
                           f"({_check(net[1] > bic[1])})")
        else:
            summary.append(f"SR x2 PSNR gain over bicubic {net[0] - bic[0]:+.2f} dB, SSIM {net[1]:.4f} vs {bic[1]:.4f}")
    lines += ["### Upscaled label maps (x4, rendered held-out images, segmented at fixed thresholds)", "",
              "| held-out image | method | mean IoU | max abs VF error | mean SSA rel. error |",
              "|---|---|---|---|---|"]
    label_rows = label_sr_rows(4, models[4])
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.4f} | {r[4]:.3f} |" for r in label_rows]
    lines.append("")
    iou = {m: float(np.mean([r[2] for r in label_rows if r[1] == m])) for m in ("bicubic", "battgai SR x4 (net)")}
    summary.append(f"x4 label maps: mean IoU {iou['battgai SR x4 (net)']:.3f} (net) vs {iou['bicubic']:.3f} (bicubic)")
    rows = denoise_rows(images, models["denoise"])
    lines += ["### Denoising", "", "| noise | held-out image | method | PSNR dB | SSIM |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.4f} |" for r in rows]
    means = _means(rows, (0, 2))
    for case in NOISE_CASES:
        nlm, tvm, net = (means[(case, m)] for m in ("skimage denoise_nl_means", "skimage denoise_tv_chambolle",
                                                    "battgai denoiser (net)"))
        lines.append(f"| {case} | **mean** | NL-means / TV / net | {nlm[0]:.2f} / {tvm[0]:.2f} / {net[0]:.2f} | "
                     f"{nlm[1]:.4f} / {tvm[1]:.4f} / {net[1]:.4f} |")
        summary.append(f"denoising ({case}): net {net[0]:.2f} dB vs NL-means {nlm[0]:.2f} dB, gain "
                       f"{net[0] - nlm[0]:+.2f} dB (target >= +1 dB: {_check(net[0] - nlm[0] >= 1)})")
    lines.append("")

    # Timing: the target is about the CPU, so measure with 1 thread (as the other jobs) and with 2.
    t1 = time_upscale(models[2])
    torch.set_num_threads(2)
    t2 = time_upscale(models[2])
    torch.set_num_threads(1)
    whole = apply_model(images[next(iter(images))], models[4], tile=None)
    tiled = apply_model(images[next(iter(images))], models[4], tile=96)
    seam_db = psnr_ssim(whole, tiled)[0] if not np.array_equal(whole, tiled) else float("inf")
    summary.append(f"SR x2 of a 1024x1024 image (output 2048x2048), 256 px tiles: {t1:.2f} s on 1 thread, "
                   f"{t2:.2f} s on 2 threads (target <= 2 s: {_check(min(t1, t2) <= 2)})")
    summary.append(f"tiled (96 px) vs whole-image SR x4 on the held-out raw region: PSNR between them "
                   f"{seam_db:.1f} dB, max abs difference {float(np.abs(whole - tiled).max()):.2e}")

    rows, info = generation_rows()
    real = rows[0]
    lines += [f"### Generation (pore phase, target porosity {info['porosity']:.4f} = held-out mean)", "",
              "| set | porosity | SSA 1/vox | tortuosity (mean of 3 axes, 2 x 64^3) | S2 L1 gap to real (r <= 32) |",
              "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.3f} | {r[4]:.5f} |" for r in rows]
    lines += ["", "| error vs real | level-cut generator | SliceGAN | porespy blobs | blobs / level-cut | "
              "blobs / SliceGAN |", "|---|---|---|---|---|---|"]
    for label, idx, rel in (("porosity (absolute)", 1, False), ("SSA (relative)", 2, True),
                            ("tortuosity (relative)", 3, True), ("S2 L1 gap", 4, None)):
        errs = [r[idx] if rel is None else abs(r[idx] - real[idx]) / (real[idx] if rel else 1.0) for r in rows[1:]]
        ratios = [f"{errs[2] / e:.1f}" if e > 0 else "n/a (error 0)" for e in errs[:2]]
        lines.append(f"| {label} | {errs[0]:.4f} | {errs[1]:.4f} | {errs[2]:.4f} | {ratios[0]} | {ratios[1]} |")
        if label.startswith("porosity"):
            summary.append(f"generated porosity error: level cut {errs[0]:.4f}, SliceGAN {errs[1]:.4f} "
                           f"(target <= 0.02: {_check(errs[0] <= 0.02)} / {_check(errs[1] <= 0.02)})")
        elif rel:
            summary.append(f"generated {label.split()[0]} relative error: level cut {errs[0]:.3f}, SliceGAN "
                           f"{errs[1]:.3f}, blobs {errs[2]:.3f} (target <= 0.10: {_check(errs[0] <= 0.10)} / "
                           f"{_check(errs[1] <= 0.10)})")
        else:
            summary.append(f"S2 L1 gap: level cut {errs[0]:.5f}, SliceGAN {errs[1]:.5f}, blobs {errs[2]:.5f}")
    summary.append(f"NMC / CBD surface area relative error: level cut {info['gen_nmc_ssa_rel_error']:.3f} / "
                   f"{info['gen_cbd_ssa_rel_error']:.3f}, SliceGAN {info['gan_nmc_ssa_rel_error']:.3f} / "
                   f"{info['gan_cbd_ssa_rel_error']:.3f} (porespy blobs has no NMC / CBD split)")
    summary.append(f"128^3 sample time: level cut {info['gen_time_s']:.2f} s, SliceGAN {info['gan_time_s']:.2f} s, "
                   f"porespy blobs {info['blob_time_s']:.2f} s (target <= 5 s: {_check(info['gen_time_s'] <= 5)} / "
                   f"{_check(info['gan_time_s'] <= 5)})")
    lines += ["", "\n\n".join(blocks), "", "### Targets", ""] + [f"- {s}" for s in summary]
    lines.append(f"\nBenchmark wall time {(time.perf_counter() - started) / 60:.1f} min.")
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("microstructure", md)
