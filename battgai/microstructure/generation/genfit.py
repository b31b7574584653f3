"""Fit the level-cut generator to every statistic at once, and score it the same way (issue 23, item 5).

Statistics of a volume are means over its disjoint 64^3 crops: porosity, specific surface area,
correlation length (:func:`~battgai.microstructure.analysis.metrics.correlation_length`) and tortuosity
(mean of the three axes) of the pore phase, plus the surface area and correlation length of NMC.
A generated 128^3 sample is cut into crops the same way, so real and generated volumes are
measured alike (non-periodic crops, the same size, the same solver).

Why a joint fit: fitting one statistic at a time (NMC smoothing to the NMC surface area, then the
pore bias to pore surface area + tortuosity) left the pore correlation length 25 % short; a
parameter that fixes it moves the others. :func:`fit` therefore scores every grid point on the
largest relative error over all fitted statistics (ties: the sum), in two stages because a
tortuosity solve costs ~100 times the rest: the cheap statistics rank the whole grid, tortuosity
decides among the best ``keep`` points. Every number comes from the training part; the probes
use fixed seeds, so grid points differ by their parameters, not their noise.

:func:`fit_reference` fits the same settings (and the pore field's smoothing) to the statistics as
the field's reference codes measure them (:mod:`battgai.microstructure.analysis.reference`), on
samples of the sizes users ask for; the two codes' surface areas differ by 13-34 % on real crops, so
a fit to one is not a fit to the other.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from battgai.microstructure.analysis import metrics
from battgai.microstructure.generation import generator

SIDE = 64
#: Every statistic measured, pore phase unless named.
STATISTICS = ("porosity", "surface area", "correlation length", "tortuosity", "NMC surface area",
              "NMC correlation length")
#: What :func:`fit` matches by default (porosity is met exactly by construction).
FIT_TERMS = ("surface area", "correlation length", "tortuosity", "NMC surface area")
SCALE_GRID = (1.0, 1.3, 1.6)
SMOOTH_GRID = (0.5, 1.0)
BIAS_GRID = (-4.0, -3.0, -2.0)


def crops(volume: np.ndarray, side: int = SIDE) -> list[np.ndarray]:
    """Every disjoint ``side``^3 crop of ``volume``, from the origin corner."""
    n = [s // side for s in volume.shape]
    if min(n) < 1:
        raise ValueError(f"volume {volume.shape} is smaller than one {side}^3 crop")
    return [volume[a * side:(a + 1) * side, b * side:(b + 1) * side, c * side:(c + 1) * side]
            for a in range(n[0]) for b in range(n[1]) for c in range(n[2])]


def statistics(volumes: list[np.ndarray], tortuosity: bool = True) -> dict[str, float]:
    """Means of :data:`STATISTICS` over ``volumes`` (crops); tortuosity ``nan`` when not asked for."""
    r_max = min(volumes[0].shape) // 3

    def mean(fn) -> float:
        return float(np.mean([fn(v) for v in volumes]))

    return {
        "porosity": mean(lambda v: metrics.volume_fraction(v, 0)),
        "surface area": mean(lambda v: metrics.specific_surface_area(v, 0)),
        "correlation length": mean(lambda v: metrics.correlation_length(v, 0, r_max)),
        "tortuosity": mean(lambda v: np.mean([metrics.tortuosity(v, 0, ax).tau for ax in range(3)]))
        if tortuosity else float("nan"),
        "NMC surface area": mean(lambda v: metrics.specific_surface_area(v, 1)),
        "NMC correlation length": mean(lambda v: metrics.correlation_length(v, 1, r_max)),
    }


def relative_errors(stats: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """|stats / reference - 1| for every statistic both hold."""
    return {k: abs(stats[k] / reference[k] - 1) for k in reference if k in stats}


def generated_crops(model: generator.LevelCutGenerator, porosity: float, n: int, side: int = SIDE,
                    probe_side: int = 2 * SIDE, seed: int = 0) -> list[np.ndarray]:
    """Crops of ``n`` generated ``probe_side``^3 samples (seeds ``seed`` .. ``seed + n - 1``)."""
    return [c for i in range(n) for c in crops(generator.sample(model, porosity, (probe_side,) * 3, seed=seed + i),
                                                side)]


def base_model(labels: np.ndarray, r_max: int = 48, **settings) -> generator.LevelCutGenerator:
    """The generator with field correlations and phase shares from ``labels`` and the given ``settings``.

    ``settings`` are :class:`~battgai.microstructure.generation.generator.GeneratorConfig` fields (smoothing,
    bias, scale); what :func:`fit` searches.
    """
    porosity = metrics.volume_fraction(labels, 0)
    f_nmc, f_cbd = metrics.volume_fraction(labels, 1), metrics.volume_fraction(labels, 2)
    config = generator.GeneratorConfig(r_max=r_max, train_porosity=round(porosity, 4),
                                       nmc_share=round(f_nmc / max(f_nmc + f_cbd, 1e-9), 4), **settings)
    return generator.LevelCutGenerator(config, generator.fit_correlation(labels == 0, r_max),
                                       generator.fit_correlation(labels == 1, r_max))


def fit(labels: np.ndarray, r_max: int = 48, scale_grid: tuple[float, ...] = SCALE_GRID,
        smooth_grid: tuple[float, ...] = SMOOTH_GRID, bias_grid: tuple[float, ...] = BIAS_GRID,
        terms: tuple[str, ...] = FIT_TERMS, side: int = SIDE, probes: int = 1, keep: int = 4,
        log=print) -> generator.LevelCutGenerator:
    """Fit the generator on a segmented 3-phase volume (0 pore, 1 NMC, 2 CBD) with a joint objective.

    The field correlations come from the S2 of pore and NMC (:func:`generator.fit_correlation`);
    ``nmc_scale`` x ``smooth_nmc`` x ``pore_bias`` is searched on the grids for the smallest
    largest relative error over ``terms`` (see the module docstring), with ``probes`` samples of
    (2 ``side``)^3 cut into ``side``^3 crops against the crops of ``labels``.

    Parameters
    ----------
    labels : ndarray
        Training volume, at least ``side`` per axis.
    terms : tuple of str
        Names from :data:`STATISTICS`; one name gives a one-statistic fit (the tests' baseline).
    keep : int
        Grid points that get tortuosity solves when ``terms`` holds ``"tortuosity"``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"fit needs a 3D label volume, got shape {labels.shape}")
    unknown = set(terms) - set(STATISTICS)
    if unknown or not terms:
        raise ValueError(f"terms must be names from {STATISTICS}, got {terms}")
    base = base_model(labels, r_max)
    config, porosity = base.config, metrics.volume_fraction(labels, 0)
    with_tau = "tortuosity" in terms
    real = crops(labels, side)
    target = statistics(real, tortuosity=with_tau)
    log(f"training statistics ({len(real)} crops of {side}^3): " + ", ".join(f"{k} {v:.4f}" for k, v in target.items()))
    cheap = [t for t in terms if t != "tortuosity"]

    def model_at(scale: float, sigma: float, bias: float) -> generator.LevelCutGenerator:
        return dataclasses.replace(base, config=dataclasses.replace(config, nmc_scale=scale, smooth_nmc=sigma,
                                                                    pore_bias=bias))

    def score(errors: dict[str, float], names: list[str]) -> tuple[float, float]:
        return max(errors[t] for t in names), sum(errors[t] for t in names)

    first: dict[tuple[float, float, float], dict[str, float]] = {}
    for point in itertools.product(scale_grid, smooth_grid, bias_grid):
        vols = generated_crops(model_at(*point), porosity, probes, side, seed=12345)
        first[point] = relative_errors(statistics(vols, tortuosity=False), target)
        log(f"nmc_scale {point[0]}, smooth_nmc {point[1]}, pore_bias {point[2]}: "
            + ", ".join(f"{t} {first[point][t]:.3f}" for t in cheap))
    ranked = sorted(first, key=lambda p: score(first[p], cheap) if cheap else (0.0, 0.0))
    if not with_tau:
        return model_at(*ranked[0])
    final = {}
    for point in ranked[:keep]:
        vols = generated_crops(model_at(*point), porosity, probes, side, seed=12345)
        tau = statistics(vols)["tortuosity"]
        final[point] = {**first[point], "tortuosity": abs(tau / target["tortuosity"] - 1)}
        log(f"nmc_scale {point[0]}, smooth_nmc {point[1]}, pore_bias {point[2]}: tortuosity "
            f"{final[point]['tortuosity']:.3f}, largest error {score(final[point], list(terms))[0]:.3f}")
    return model_at(*min(final, key=lambda p: score(final[p], list(terms))))


def score(model: generator.LevelCutGenerator, heldout: np.ndarray, n: int = 2, seed: int = 0) -> dict[str, float]:
    """Relative errors of ``n`` 128^3 samples at the held-out porosity against the held-out crops' statistics."""
    real = statistics(crops(heldout))
    return relative_errors(statistics(generated_crops(model, real["porosity"], n, seed=seed)), real)


def train_and_save(seed: int = 0, log=print):
    """Fit on the training half of the TauFactor volume, score on the held-out half, bundle."""
    from battgai.core import registry
    from battgai.microstructure import io

    model = fit(io.real_volume("train"), log=log)
    log(f"fitted {model.config}")
    errors = score(model, io.real_volume("test"), seed=seed)
    log(f"held-out relative errors: {errors}")
    card = registry.ModelCard(
        name=generator.MODEL_NAME,
        task="microstructure",
        architecture="Gaussian level-cut (Quiblier / Adler) statistical generator with fitted field "
                     "correlations; 3 phases (pore, NMC, CBD); conditioned on porosity. Not a neural network.",
        config=dataclasses.asdict(model.config),
        parameters=int(model.rho_pore.size + model.rho_nmc.size),
        training_data="TauFactor example NMC electrode (tldr-group/taufactor docs/notebooks/electrode.tiff, "
                      "MIT; Kench et al., JOSS 2023), segmented pore / NMC / CBD, slices z < 128.",
        split="Fitted on z < 128 of the 256^3 volume (its 32 crops of 64^3); scored on the 32 crops of 64^3 "
              "of z >= 128.",
        metrics={f"{k.replace(' ', '_').lower()}_rel_error": round(v, 4) for k, v in errors.items()},
        metrics_command="python -m battgai.bench microstructure --part generator",
        retrain_command="python -m battgai.train microstructure --model generator",
        notes="A classical fitted statistical model, the page's default generator. nmc_scale, smooth_nmc and "
              "pore_bias are fitted jointly on the training half: the grid point with the smallest largest "
              "relative error over pore surface area, pore correlation length, pore tortuosity and NMC surface "
              "area (battgai.microstructure.generation.genfit). The previous one-statistic-at-a-time fit left the pore "
              "correlation length 25 % short. nmc_scale stretches the NMC field's correlation, so NMC no longer "
              "reproduces its own two-point correlation: the NMC correlation length is reported "
              "(nmc_correlation_length_rel_error) and is not a fitted term. Metrics: 2 generated 128^3 samples "
              "at the held-out porosity, each cut into 8 crops of 64^3, means against the means of the 32 "
              "held-out crops (relative errors; pore phase unless named).",
    )
    return registry.save(generator.MODEL_NAME, model.tensors(), card)


#: Statistics of :func:`reference_statistics` that :func:`fit_reference` matches (porosity is exact).
REFERENCE_TERMS = ("surface area", "correlation length")
#: Values tried per setting by :func:`fit_reference`. The pore field's ``smooth`` is searched too:
#: MATBOX pores are coarser than TauFactor's and NMC settings alone left their surface 37 % high.
REFERENCE_GRID = {"nmc_scale": (1.0, 1.3, 1.6, 2.0), "smooth_nmc": (0.0, 0.5, 1.0, 2.0),
                  "smooth": (0.0, 0.5, 1.0, 2.0), "pore_bias": (-4.0, -3.0, -2.0, 0.0)}


def reference_statistics(volumes: list[np.ndarray]) -> dict[str, float]:
    """Means over ``volumes`` of the pore phase's porosity, surface area and correlation length by the
    reference codes (:mod:`battgai.microstructure.analysis.reference`); tortuosity is left to the bench
    (a solve costs ~100 times the rest)."""
    from battgai.microstructure.analysis import reference

    def mean(fn) -> float:
        return float(np.mean([fn(v) for v in volumes]))

    return {"porosity": mean(reference.porosity), "surface area": mean(reference.surface_area),
            "correlation length": mean(reference.correlation_length)}


def fit_reference(labels: np.ndarray, *, sides: tuple[int, ...] = (SIDE, 2 * SIDE),
                  grid: dict[str, tuple[float, ...]] | None = None, sweeps: int = 3, seed: int = 12345,
                  log=print) -> generator.LevelCutGenerator:
    """Fit the generator's settings to the reference-measured statistics of ``labels``' ``SIDE``^3 crops.

    Unlike :func:`fit`, the generated volumes are sampled at each size in ``sides`` directly (the
    sizes a user asks for), not cut from a larger sample: a periodic field in a small box has a
    different surface than a crop of a large one. The score of a setting is the largest relative
    error over :data:`REFERENCE_TERMS` and ``sides`` (ties: the sum). The search is coordinate-wise
    (one setting at a time over its ``grid`` values, the others held, ``sweeps`` times): a full grid
    of 256 points costs ~40 CPU minutes, three coordinate sweeps 25-40 points (a sweep that changes
    nothing ends the search).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"fit_reference needs a 3D label volume, got shape {labels.shape}")
    grid = REFERENCE_GRID if grid is None else grid
    unknown = set(grid) - {f.name for f in dataclasses.fields(generator.GeneratorConfig)}
    if unknown:
        raise ValueError(f"grid keys must be GeneratorConfig fields, got {sorted(unknown)}")
    base = base_model(labels)
    porosity = metrics.volume_fraction(labels, 0)
    target = reference_statistics(crops(labels))
    log("training statistics (reference codes): " + ", ".join(f"{k} {target[k]:.4f}" for k in REFERENCE_TERMS))
    seen: dict[tuple, tuple[float, float]] = {}

    def score(settings: dict[str, float]) -> tuple[float, float]:
        key = tuple(sorted(settings.items()))
        if key not in seen:
            model = dataclasses.replace(base, config=dataclasses.replace(base.config, **settings))
            errors = {}
            for side in sides:
                # Two small samples: one 64^3 volume alone is as noisy as the real crop-to-crop spread.
                n = 2 if side <= SIDE else 1
                stats = reference_statistics([generator.sample(model, porosity, (side,) * 3, seed=seed + i)
                                              for i in range(n)])
                errors |= {f"{t} {side}^3": stats[t] / target[t] - 1 for t in REFERENCE_TERMS}
            size = [abs(e) for e in errors.values()]
            seen[key] = (max(size), sum(size))
            log(", ".join(f"{k} {v}" for k, v in settings.items()) + ": "
                + ", ".join(f"{k} {v:+.3f}" for k, v in errors.items()))
        return seen[key]

    best = {name: getattr(base.config, name) for name in grid}
    for _ in range(sweeps):
        before = dict(best)
        for name, values in grid.items():
            # The value held so far stays a candidate, so a sweep never makes the score worse.
            best[name] = min(dict.fromkeys((best[name], *values)), key=lambda v: score({**best, name: v}))
        if best == before:
            break
    return dataclasses.replace(base, config=dataclasses.replace(base.config, **best))
