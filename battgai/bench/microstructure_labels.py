"""Label images upscaled as labels: signed distances against nearest-neighbour and bicubic-then-rounded.

Part of ``python -m battgai bench microstructure``; alone with ``--part labels``. Every segmented data set of
the bench: the two held-out Dahari images, the TLDR image, and a held-out slice each of the TauFactor and
MATBOX volumes. Each is reduced x2 and x4 to the labels a segmentation of a coarser scan gives (each block's
majority phase, :func:`~battgai.microstructure.enhancement.labels.downscale_labels`), upscaled back by each
method and scored against the true labels (:func:`~battgai.microstructure.enhancement.labels.label_scores`).
"""

from __future__ import annotations

import numpy as np

from battgai.microstructure.enhancement import labels as lab

SCALES = (2, 4)
KEYS = ("mean_iou", "boundary_f1", "max_vf_error", "mean_ssa_rel_error")
HIGHER_BETTER = {"mean_iou": True, "boundary_f1": True, "max_vf_error": False, "mean_ssa_rel_error": False}


def datasets() -> dict[str, np.ndarray]:
    from battgai.core.data import load_image
    from battgai.microstructure import io

    return {**io.heldout_labels(),
            "TLDR NMC image (253x253)": io.phase_labels(np.squeeze(load_image(io.TLDR_IMAGE))),
            "TauFactor held-out slice z=200 (256x256)": io.real_volume("test", "taufactor")[72],
            "MATBOX held-out slice z=200 (301x301)": io.real_volume("test", "matbox")[77]}


def rows() -> list[dict]:
    out = []
    for name, truth_full in datasets().items():
        for scale in SCALES:
            truth = truth_full[tuple(slice(0, s - s % scale) for s in truth_full.shape)]
            coarse = lab.downscale_labels(truth, scale)
            for method in lab.METHODS:
                out.append({"data": name, "scale": scale, "method": method,
                            **lab.label_scores(lab.upscale_labels(coarse, scale, method), truth)})
    return out


def report() -> str:
    r = rows()
    lines = ["### Label images upscaled as labels (`--part labels`)", "",
             "Each segmented image reduced to the majority phase of each 2x2 / 4x4 block (a segmentation of a coarser "
             "scan), upscaled back, scored against the true labels: mean per-phase IoU, boundary F1 (1 px), largest "
             "volume-fraction error, mean relative surface-area error. The page upscales label images by signed "
             "distance.", "",
             "| data | scale | method | mean IoU | boundary F1 | max VF error | mean SSA rel. error |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {x['data']} | x{x['scale']} | {x['method']} | {x['mean_iou']:.3f} | {x['boundary_f1']:.3f} | "
              f"{x['max_vf_error']:.4f} | {x['mean_ssa_rel_error']:.3f} |" for x in r]
    wins = {k: 0 for k in KEYS}
    cases = 0
    for data in dict.fromkeys(x["data"] for x in r):
        for scale in SCALES:
            by = {x["method"]: x for x in r if x["data"] == data and x["scale"] == scale}
            cases += 1
            for k in KEYS:
                ours, others = by["signed distance"][k], [by[m][k] for m in lab.METHODS[1:]]
                wins[k] += all(ours >= o if HIGHER_BETTER[k] else ours <= o for o in others)
    lines += ["", "Target (issue 34): signed distance better than both baselines on every label data set. Cases "
              f"(data set x scale, {cases} in all) where it is at least as good as both: "
              + ", ".join(f"{k.replace('_', ' ')} {wins[k]}" for k in KEYS)
              + (". Met." if all(v == cases for v in wins.values()) else ". **Missed** where fewer than all.")]
    return "\n".join(lines)
