"""The same images stored at every bit depth a lab produces, denoised: does the answer depend on the container?

Part of ``python -m battgai bench microstructure``; alone with ``--part bitdepth``. Each clean image type of
the guard bench (:func:`battgai.bench.microstructure_guard.image_types`) gets Gaussian noise of 3 % and of
10 % of its range (fixed seed), and is stored as: 16-bit (0-65535 in uint16), 12-bit in uint16 (0-4095),
14-bit in uint16, 8-bit, int16 CT numbers (-1000 to 3000) and float32 in [0, 1]. Each goes through the page's
denoising (:func:`battgai.microstructure.pipeline.enhance`, method picked by the guard) and is scored in dB
against the clean image after mapping the output back with the range the app read
(:func:`battgai.microstructure.io.intensity_range`). Target: 12-bit in uint16 within 0.3 dB of 16-bit.
"""

from __future__ import annotations

import numpy as np

from battgai.microstructure import io, pipeline
from battgai.microstructure.enhancement.evaluate import psnr_ssim

NOISE = (0.03, 0.10)
#: How each container stores a [0, 1] image: (lo, hi, dtype).
ENCODINGS = {
    "16-bit": (0, 65535, np.uint16),
    "12-bit in uint16": (0, 4095, np.uint16),
    "14-bit in uint16": (0, 16383, np.uint16),
    "8-bit": (0, 255, np.uint8),
    "int16 CT (-1000 to 3000)": (-1000, 3000, np.int16),
    "float32": (0.0, 1.0, np.float32),
}
TARGET_DB = 0.3
#: PSNR is capped here when two results are compared: above it both are exact to a few pixels, and a single pixel
#: of a binary image moves an uncapped PSNR by tens of dB (or to infinity).
CAP_DB = 60.0


def encode(image: np.ndarray, lo: float, hi: float, dtype) -> np.ndarray:
    """``image`` in [0, 1] written into ``dtype`` between ``lo`` and ``hi`` (rounded for integers)."""
    values = lo + np.clip(image, 0, 1) * (hi - lo)
    return (np.rint(values) if np.dtype(dtype).kind in "ui" else values).astype(dtype)


def rows(images: dict[str, np.ndarray]) -> list[dict]:
    """One row per (image type, noise level, encoding): PSNR after denoising, the method and the range read."""
    out = []
    for k, (name, clean) in enumerate(images.items()):
        for level in NOISE:
            noisy = clean + np.random.default_rng(k).normal(0, level, clean.shape)
            results = {}
            for enc, (lo, hi, dtype) in ENCODINGS.items():
                stored = encode(noisy, lo, hi, dtype)
                res = pipeline.enhance(stored, "denoise")
                read = io.intensity_range(stored)
                back = (res.output.astype(np.float64) - read.lo) / (read.hi - read.lo)
                results[enc] = back
                out.append({"image": name, "noise": level, "encoding": enc, "read": read.what,
                            "psnr": psnr_ssim(clean, np.clip(back, 0, 1).astype(np.float32))[0],
                            "method": res.method})
            # Pixels where the 12-bit and the 16-bit copy came out more than a 12-bit step apart.
            apart = np.abs(results["12-bit in uint16"] - results["16-bit"]) > 1.5 / 4095
            twelve = next(r for r in reversed(out) if r["encoding"] == "12-bit in uint16")
            twelve["pixels_apart"] = (int(apart.sum()), apart.size)
    return out


def markdown(table: list[dict]) -> str:
    lines = ["### Every bit depth: the same images, denoised (`--part bitdepth`)", "",
             "PSNR (dB) against the clean image after the page's denoising, per container. 12-bit vs 16-bit: "
             f"|difference| of the two PSNRs, each capped at {CAP_DB:g} dB, and the pixels whose two results lie "
             "more than 1.5 12-bit steps apart. Target: <= 0.3 dB at 3 % and 10 % noise on every image type.", "",
             "| image | noise | " + " | ".join(ENCODINGS) + " | methods picked (16-bit / 12-bit) "
             "| 12-bit vs 16-bit (dB, pixels apart) |",
             "|---|---|" + "---|" * len(ENCODINGS) + "---|---|"]
    worst = 0.0
    for name in dict.fromkeys(r["image"] for r in table):
        for level in NOISE:
            by = {r["encoding"]: r for r in table if r["image"] == name and r["noise"] == level}
            diff = abs(min(by["12-bit in uint16"]["psnr"], CAP_DB) - min(by["16-bit"]["psnr"], CAP_DB))
            worst = max(worst, diff)
            apart, size = by["12-bit in uint16"]["pixels_apart"]
            lines.append(f"| {name} | {100 * level:.0f} % | "
                         + " | ".join(f"{by[e]['psnr']:.2f}" for e in ENCODINGS)
                         + f" | {by['16-bit']['method']} / {by['12-bit in uint16']['method']} | {diff:.2f} "
                         f"({apart:,} of {size:,}) |")
    ranges = dict.fromkeys(r["read"] for r in table if r["encoding"] != "float32")
    lines += ["", f"Largest 12-bit vs 16-bit difference: {worst:.2f} dB "
                  f"({'met' if worst <= TARGET_DB else 'missed'}, target {TARGET_DB} dB). Ranges the app read: "
                  + "; ".join(ranges) + "."]
    return "\n".join(lines)


def report() -> str:
    from battgai.bench.microstructure_guard import image_types

    return markdown(rows(image_types()))
