"""Every enhancement method on a stack at the upload limit: seconds, seconds per slice, peak memory, Stop latency.

Part of ``python -m battgai.bench microstructure``; alone with ``--part stack``. The stacks are synthetic
12-bit scans in uint16 (a rendered three-phase texture per slice, Gaussian noise sigma 0.05 of the range),
512 x 512 slices:

- denoising: 128 slices, 2^25 voxels, the upload limit (:data:`battgai.uploads.MAX_PIXELS`);
- super-resolution: the largest stack the output limit (:data:`battgai.microstructure.pipeline.MAX_OUTPUT_PIXELS`,
  70 M pixels) allows below the upload limit: 64 slices at x2, 16 at x4 (67.1 M output pixels each).

Each method runs in a fresh process (``python -m battgai.bench.microstructure_stack --worker``), one torch
thread as in an engine worker. Rows marked "page" are the page's call (:func:`battgai.microstructure.
pipeline.enhance`: conversion, decision, the method, residual, the output in the input's dtype); the other
rows run one upscaler alone on the stack converted to float32, as the page's automatic choice would.

Peak memory is the process's resident high-water mark (Linux ``VmHWM``) reset through
``/proc/self/clear_refs`` just before the method, minus its resident size then (imports, models and the
input stack loaded). ``tracemalloc`` would miss most of it: it sees numpy's allocations only, not torch's
tensors (the nets) or the C buffers of skimage's filters; ``resource.getrusage``'s ``ru_maxrss`` is the
same high-water mark but cannot be reset, so it would carry the imports' peak. The same call on the first
slice alone gives the part that does not grow with the stack (the decision, the nets' activations, one
slice's work); the rest, per slice, counts the float32 copies of the stack the run holds.

Stop: the method runs again, and a Stop is asked half a slice's time (from the first run) after its second
slice is done; the callback raises at its next call, as the page's Stop does. The latency is the time from
the ask to the call's return, and should be at most one slice's time. Memory kept after the Stop is the
resident size after garbage collection and ``malloc_trim`` against that before the run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Slice side of every stack; slices per task (see the module docstring).
SIDE = 512
SLICES = {"denoise": 128, "sr_x2": 64, "sr_x4": 16}
SIGMA = 0.05
#: The Stop is asked half a slice's time after slice STOP_SLICE - 1 is done: half-way through this slice.
STOP_SLICE = 3
#: (task, method, how): "page" through pipeline.enhance (the denoising method forced), "alone" the upscaler alone.
RUNS = [("denoise", "auto", "page"), ("denoise", "none (input kept)", "page"),
        ("denoise", "non-local means", "page"), ("denoise", "total variation", "page"),
        ("denoise", "phase levels", "page"), ("denoise", "bundled denoiser", "page"),
        ("denoise", "denoiser fitted to this image", "page"),
        ("sr_x2", "auto", "page"), ("sr_x2", "super-resolution net", "alone"), ("sr_x2", "bicubic", "alone"),
        ("sr_x2", "skimage rescale + unsharp mask", "alone"),
        ("sr_x4", "auto", "page"), ("sr_x4", "bicubic", "alone"), ("sr_x4", "skimage rescale + unsharp mask", "alone")]
#: Training budget of the fitted denoiser's row (s): its inference is the bundled net's, the fit its own budget.
FIT_SECONDS = 5.0


class _Stop(Exception):
    """The page's Stop, raised from the progress callback."""


def synthetic_stack(slices: int, side: int = SIDE, seed: int = 0) -> np.ndarray:
    """``slices`` rendered three-phase slices with noise, as a 12-bit scan in uint16."""
    from scipy import ndimage as ndi

    from battgai.microstructure import io

    rng = np.random.default_rng(seed)
    out = np.empty((slices, side, side), np.uint16)
    for k in range(slices):
        field = ndi.gaussian_filter(rng.normal(size=(side, side)).astype(np.float32), 6)
        labels = np.digitize(field, np.quantile(field, [0.4, 0.8])).astype(np.uint8)
        grey = io.render_grey(labels, seed=seed + k) + rng.normal(0, SIGMA, (side, side))
        out[k] = np.round(np.clip(grey, 0, 1) * 4095).astype(np.uint16)
    return out


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _method_call(task: str, method: str, how: str, stack: np.ndarray):
    """A function ``call(progress)`` running the method on ``stack``, and what it reports as the method used."""
    import torch

    from battgai.microstructure import pipeline
    from battgai.microstructure.enhancement import enhance, guard
    from battgai.microstructure.enhancement.stack import map_slices
    from battgai.microstructure.io import to_float

    torch.set_num_threads(1)
    if how == "page":
        forced = {"auto": guard.AUTO, "phase levels": guard.PHASE_LEVELS}.get(method, method)
        fit = FIT_SECONDS if method == guard.FITTED_METHOD else 0.0
        kwargs = {"method": forced, "fit_seconds": fit} if task == "denoise" else {}
        return lambda progress: pipeline.enhance(stack, task, progress=progress, **kwargs).method
    scale = int(task[-1])
    image = to_float(stack)
    model, _ = enhance.load_model(enhance.MODEL_NAMES[scale], device="cpu")
    one = {"super-resolution net": None, "bicubic": lambda s: enhance.bicubic(s, scale),
           "skimage rescale + unsharp mask": lambda s: enhance.skimage_upscale(s, scale)}[method]
    if one is None:
        return lambda progress: (enhance.apply_model(image, model, progress=progress), method)[1]
    return lambda progress: (map_slices(one, image, scale=scale, progress=progress), method)[1]


def _timed(call, slices: int, stop_in: float | None = None) -> tuple[float, list[tuple[float, float]], str | None,
                                                                       float]:
    """Run ``call`` on a stack of ``slices``; with ``stop_in``, a Stop is asked that many seconds after slice
    :data:`STOP_SLICE` - 1 is done and raised at the next progress call.

    Returns
    -------
    (seconds, (time, slices done) at each progress call, the method used or None when stopped, time of the ask)
    """
    t0 = time.perf_counter()
    ticks: list[tuple[float, float]] = []
    asked = float("inf")

    def progress(done: int, total: int) -> None:
        nonlocal asked
        now = time.perf_counter() - t0
        ticks.append((now, done / total * slices))
        if stop_in is not None and asked == float("inf") and ticks[-1][1] >= STOP_SLICE - 1:
            asked = now + stop_in
        if now >= asked:
            raise _Stop

    try:
        used = call(progress)
    except _Stop:
        used = None
    return time.perf_counter() - t0, ticks, used, asked


def _resident_after_cleanup() -> int:
    """VmRSS (KiB) after garbage collection and glibc's malloc_trim: memory still held, not the allocator's cache."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _rss_kib("VmRSS")


def worker(task: str, method: str, how: str, path: str) -> dict:
    """One method on the stack at ``path`` in this (fresh) process: time, peak memory, then the Stop check."""
    stack = np.load(path)
    z = len(stack)
    # A first run on a small corner loads the models and skimage's lazily imported submodules: no cost of the stack.
    _method_call(task, method, how, stack[:2, :64, :64])(None)
    call = _method_call(task, method, how, stack)
    before = _resident_after_cleanup()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident size now
    seconds, ticks, used, _ = _timed(call, z)
    peak_kib = _rss_kib("VmHWM") - before
    (t_first, s_first), (t_last, s_last) = ticks[0], ticks[-1]
    per_slice = (t_last - t_first) / max(s_last - s_first, 1e-9)
    before_stop = _resident_after_cleanup()
    stop_seconds, stop_ticks, stop_used, asked = _timed(call, z, stop_in=0.5 * per_slice)
    kept_kib = _resident_after_cleanup() - before_stop
    # The same call on the stack's first slice alone: its peak is the fixed part (decision, models, one slice's work).
    one = _method_call(task, method, how, stack[:1])
    before_one = _resident_after_cleanup()
    Path("/proc/self/clear_refs").write_text("5")
    one(None)
    one_kib = _rss_kib("VmHWM") - before_one
    return {"task": task, "method": method, "how": how, "shape": list(stack.shape), "used": used,
            "seconds": seconds, "per_slice": per_slice, "first_progress": t_first, "peak_mib": peak_kib / 1024,
            "one_slice_peak_mib": one_kib / 1024, "stopped": stop_used is None, "stop_latency": stop_seconds - asked,
            "stopped_after_slices": stop_ticks[-1][1] if stop_ticks else 0.0, "kept_after_stop_mib": kept_kib / 1024}


def _run_worker(task: str, method: str, how: str, path: Path) -> dict:
    from battgai.core.registry import REPO_ROOT

    done = subprocess.run([sys.executable, "-m", "battgai.bench.microstructure_stack", task, method, how, str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{task} / {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows() -> list[dict]:
    """Every run of :data:`RUNS`, each in its own process, on stacks written once to a temporary folder."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for task, z in SLICES.items():
            paths[task] = Path(tmp) / f"{task}.npy"
            np.save(paths[task], synthetic_stack(z))
        for task, method, how in RUNS:
            out.append(_run_worker(task, method, how, paths[task]))
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def _copies(r: dict) -> float:
    """Float32 copies the run holds that grow with the stack: (peak - peak on one slice) / (slices - 1), in float32
    slices of the input (denoising) or of the result (SR). The one-slice peak is what does not grow (the decision,
    the models' activations, one slice's work)."""
    z, h, w = r["shape"]
    scale = 1 if r["task"] == "denoise" else int(r["task"][-1])
    return (r["peak_mib"] - r["one_slice_peak_mib"]) * 2**20 / ((z - 1) * h * w * scale * scale * 4)


def _held(r: dict) -> float:
    """Float32 copies the result itself holds: the page's float32 input and result and the result in the input's
    uint16 (half a float32 copy); an upscaler alone, its result."""
    if r["how"] == "alone":
        return 1.0
    scale = 1 if r["task"] == "denoise" else int(r["task"][-1])
    return 1 / scale**2 + 1.0 + 0.5


#: Copies a run may hold beyond what its result holds (allocator granularity, the last slice in flight).
SLACK_COPIES = 0.25


def report() -> str:
    from battgai.uploads import MAX_PIXELS

    started = time.perf_counter()
    r = rows()
    lines = ["### Every method on a stack at the upload limit (`--part stack`)", "",
             f"Synthetic 12-bit stacks in uint16, {SIDE} x {SIDE} slices: denoising {SLICES['denoise']} slices "
             f"({SLICES['denoise'] * SIDE * SIDE:,} voxels = the upload limit {MAX_PIXELS:,}); super-resolution "
             f"{SLICES['sr_x2']} slices at x2 and {SLICES['sr_x4']} at x4, the most the 70 M output-pixel limit "
             "allows. One process per method, 1 torch thread, on the CPU. *page*: the page's call (conversion, "
             "decision, method, residual, output in uint16); *alone*: the upscaler alone on the float32 stack. "
             "*first progress*: seconds before the first progress call (conversion, decision and the first slice: a "
             "Stop waits for it). *peak*: resident high-water mark above the loaded process (Linux VmHWM reset just "
             "before; tracemalloc would miss torch's tensors and skimage's C buffers); *1 slice*: the same on the "
             "first slice alone (what does not grow with the stack). *copies*: (peak - 1 slice) over the float32 size "
             "of the other slices, of the input (denoising) or the result (SR); *held*: what the result itself holds "
             "(float32 input and result, uint16 output). *Stop*: asked half a slice after slice "
             f"{STOP_SLICE - 1} is done; latency = ask to return. *kept*: resident memory after the stopped run "
             "(garbage collected, malloc_trim) minus before it.", "",
             "| task, stack | method | call | used | s | s / slice | first progress s | peak MiB | 1 slice MiB | "
             "copies | held | stop latency s | kept after Stop MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in r:
        lines.append(f"| {x['task']} {'x'.join(map(str, x['shape']))} | {x['method']} | {x['how']} | {x['used']} | "
                     f"{x['seconds']:.1f} | {x['per_slice']:.3f} | {x['first_progress']:.2f} | {x['peak_mib']:.0f} | "
                     f"{x['one_slice_peak_mib']:.0f} | {_copies(x):.2f} | {_held(x):.2f} | {x['stop_latency']:.3f} | "
                     f"{round(x['kept_after_stop_mib'])} |")
    late = [x for x in r if not x["stopped"] or x["stop_latency"] > x["per_slice"]]
    heavy = [x for x in r if _copies(x) > _held(x) + SLACK_COPIES]
    lines += ["", "Targets: every run stops within one slice's time of the Stop: "
              + ("met." if not late else "**missed** by " + "; ".join(
                  f"{x['task']} {x['method']} ({x['stop_latency']:.3f} s for {x['per_slice']:.3f} s per slice)"
                  for x in late) + "."),
              f"No run holds more than its result's copies + {SLACK_COPIES:g}: "
              + ("met." if not heavy else "**missed** by " + "; ".join(
                  f"{x['task']} {x['method']} ({_copies(x):.2f} for {_held(x):.2f})" for x in heavy) + "."),
              "", f"Block wall time {(time.perf_counter() - started) / 60:.1f} min on {platform.machine()}, "
              f"{os.cpu_count()} CPU cores shared with other jobs.",
              "Command: `python -m battgai.bench microstructure --part stack`."]
    return "\n".join(lines)

if __name__ == "__main__":
    print(json.dumps(worker(*sys.argv[1:5])))
