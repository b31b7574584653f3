"""2D / 3D fusion scored against the truth (issue 23): part of ``python -m battgai.bench microstructure``.

For the TauFactor and MATBOX NMC volumes: a 128^3 region (the last 128 slices, centred
in-plane) is the truth; its x4 block average (32^3 partial-volume fractions) is the
low-resolution volume; one full slice from the other end of the volume (z = 20) is
the high-resolution 2D image. Fused (:mod:`battgai.microstructure.generation.fusion`) and
trilinear-upsampled volumes are scored on volume fraction, specific surface area and
tortuosity (mean of 3 axes, centre 64^3) against the truth, for the pore and NMC phases.
"""

from __future__ import annotations

import numpy as np

from battgai.microstructure import io
from battgai.microstructure.analysis import metrics
from battgai.microstructure.generation import fusion

SCALE = 4
SIDE = 128


def _scores(mask: np.ndarray) -> tuple[float, float, float]:
    v = mask.astype(np.uint8)
    tau = float(np.mean([metrics.tortuosity(v, 1, axis=a).tau for a in range(3)]))
    return metrics.volume_fraction(v, 1), metrics.specific_surface_area(v, 1), tau


def rows() -> list[dict]:
    volumes = {"TauFactor NMC": io.phase_labels(io.load_image(io.TAUFACTOR_VOLUME)),
               "MATBOX NMC": io.phase_labels(io.load_image(io.NREL_VOLUME))}
    out = []
    for name, labels in volumes.items():
        y0, x0 = (labels.shape[1] - SIDE) // 2, (labels.shape[2] - SIDE) // 2
        truth = labels[-SIDE:, y0:y0 + SIDE, x0:x0 + SIDE]
        for phase, phase_name in ((0, "pore"), (1, "NMC")):
            res = fusion.fuse(fusion.degrade(truth, phase, SCALE), labels[20] == phase, SCALE)
            t, f, b = _scores(truth == phase), _scores(res.volume), _scores(res.baseline)
            out.append({"volume": name, "phase": phase_name, "truth": t, "fused": f, "baseline": b,
                        "seconds": res.seconds})
    return out


def markdown(table: list[dict]) -> str:
    def err(r: dict, kind: str, i: int) -> float:
        return abs(r[kind][i] / r["truth"][i] - 1)

    lines = ["### 2D / 3D fusion (low-resolution volume + high-resolution 2D image)", "",
             f"Truth: a {SIDE}^3 region; low-resolution input: its x{SCALE} block average; 2D image: slice z = 20 "
             "from the other end of the volume. Relative errors against the truth; tortuosity = mean of 3 axes on "
             "the centre 64^3. Baseline: trilinear upsampling cut at the same volume fraction.", "",
             "| volume | phase | truth SSA | truth tortuosity | SSA error fused / baseline | tortuosity error fused / "
             "baseline | fit s |", "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['volume']} | {r['phase']} | {r['truth'][1]:.4f} | {r['truth'][2]:.3f} | "
                     f"{100 * err(r, 'fused', 1):.1f} % / {100 * err(r, 'baseline', 1):.1f} % | "
                     f"{100 * err(r, 'fused', 2):.1f} % / {100 * err(r, 'baseline', 2):.1f} % | {r['seconds']:.1f} |")
    lines.append("")
    for r in table:
        ok = [err(r, "fused", i) <= 0.10 and err(r, "fused", i) <= err(r, "baseline", i) / 2 for i in (1, 2)]
        lines.append(f"- {r['volume']}, {r['phase']}: SSA {'meets' if ok[0] else 'MISSES'}, tortuosity "
                     f"{'meets' if ok[1] else 'MISSES'} the target (error <= 10 % and at most half the baseline's).")
    lines.append(f"- 128^3 output in <= 60 s: {'yes' if all(r['seconds'] <= 60 for r in table) else 'NO'} "
                 f"(slowest {max(r['seconds'] for r in table):.1f} s).")
    return "\n".join(lines)


def report() -> str:
    return markdown(rows())
