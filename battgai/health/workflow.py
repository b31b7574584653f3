"""One call per page step: load curves, generate at target SOH, explore the latent space, export.

The page only reads widgets, calls these functions and renders what they return.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from battgai.core.provenance import Provenance
from battgai.health.generation import sample as sampling
from battgai.health.preprocess import CurveSet, resample, to_cycling
from battgai.health.schema import CyclingData, demo_data, load_nasa, score_basis

#: Bounds checked before work starts (the page names them). Resampling costs ~0.3 ms per cycle and the
#: generator ~0.1 ms per curve, so these keep each step within seconds on 2 cores; the quick experiment
#: retrains the generator once per split (one split per cell in the early-life regime, ~5-10 s each).
MAX_CYCLES = 20_000
MAX_GENERATED_CURVES = 2_000
MAX_EXPERIMENT_CELLS = 12


@dataclasses.dataclass
class Loaded:
    data: CyclingData
    curves: CurveSet
    is_demo: bool


def load_curves(source: str, cells: list[str] | None = None) -> Loaded:
    """``source="nasa"`` (``cells`` from the NASA set) or ``"demo"`` (synthetic cells made here).

    Raises ``battgai.core.data.DataNotFound`` when NASA data is absent, so callers can fall back to demo.
    """
    if source == "nasa":
        data = load_nasa(cells)
    elif source == "demo":
        data = demo_data()
    else:
        raise ValueError(f"source must be 'nasa' or 'demo', got {source!r}")
    return Loaded(data, resample(data), source == "demo")


def from_upload(data: CyclingData) -> Loaded:
    """Resample an upload's discharge cycles; refuses more than :data:`MAX_CYCLES` before resampling."""
    if len(data.cycles) > MAX_CYCLES:
        raise ValueError(f"The file holds {len(data.cycles):,} discharge cycles; the limit is {MAX_CYCLES:,}. "
                         "Split it by cell or keep every n-th cycle.")
    return Loaded(data, resample(data), False)


@dataclasses.dataclass
class Generation:
    """Synthetic curves, the nearest real curve of each, and how they were made."""

    synthetic: CurveSet
    nearest: np.ndarray
    provenance: Provenance

    def csv(self) -> bytes:
        """The synthetic curves in the cycling schema (constant-current records)."""
        return to_cycling(self.synthetic, self.provenance.model).to_csv()


def target_conditions(soh_values: list[float], temperature_c: float, current_a: float, n: int) -> np.ndarray:
    """``n`` rows per target SOH, all at one temperature and current."""
    if not soh_values:
        raise ValueError("give at least one target SOH")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if len(soh_values) * n > MAX_GENERATED_CURVES:
        raise ValueError(f"{len(soh_values)} target SOH values x {n} curves each is {len(soh_values) * n:,} curves; "
                         f"the limit is {MAX_GENERATED_CURVES:,} per run")
    soh = np.repeat(np.asarray(soh_values, float), n)
    return np.column_stack([soh, np.full(soh.size, temperature_c), np.full(soh.size, abs(current_a))])


def generate(gen, conditions: np.ndarray, real: CurveSet, seed: int = 0) -> Generation:
    """Sample curves at ``conditions`` (in ``real``'s nominal capacity) and find their nearest real curves.

    ``gen`` is either generator (:mod:`battgai.health.generation.generators`).
    """
    from battgai.health.generation import generators

    syn = generators.sample(gen, conditions, seed=seed, nominal_ah=real.nominal_ah)
    prov = Provenance.now(gen.name, gen.sha256, {
        "conditions (SOH, T C, |I| A)": np.round(conditions, 4).tolist(), "nominal_ah": real.nominal_ah,
        "representation": "Q(V): Ah delivered before the loaded voltage reaches each voltage",
    }, seed)
    return Generation(syn, sampling.nearest(syn, real), prov)


def experiment_problem(n_cells: int) -> str | None:
    """Why the quick augmentation experiment cannot run on ``n_cells`` cells, or None when it can."""
    if n_cells < 3:
        return f"The experiment needs at least 3 cells with the window observed; this selection has {n_cells}."
    if n_cells > MAX_EXPERIMENT_CELLS:
        return (f"The quick experiment retrains the generator once per split, up to one split per cell: at most "
                f"{MAX_EXPERIMENT_CELLS} cells (this selection has {n_cells}). Pick fewer cells, or run "
                "`python -m battgai.bench health` for the full experiment.")
    return None


def latent_point(gen: sampling.Generator, z: tuple[float, float], condition: tuple[float, float, float],
                 nominal_ah: float) -> CurveSet:
    """Decode one latent point at one condition (SOH, T, |I|)."""
    return sampling.sample(gen, np.array([condition]), z=np.array([z]), nominal_ah=nominal_ah)


@dataclasses.dataclass
class Estimate:
    """SOH predicted from the 3.9 -> 3.5 V window of each curve, beside the labelled SOH.

    ``extrapolating`` marks the curves outside the estimator's training range (``reasons`` says how,
    per curve): their estimates are shown apart and left out of :attr:`rmse`. Scores are against
    full discharges only where the file has one (:func:`~battgai.health.schema.score_basis`):
    :attr:`scored_against` names what they are against.
    """

    curves: CurveSet
    predicted: np.ndarray
    model: str
    extrapolating: np.ndarray
    reasons: list[str]

    @property
    def scored(self) -> np.ndarray:
        """Curves whose labelled SOH a score may use (full discharges, or the partial ones when none is full)."""
        return score_basis(self.curves.capacity_source)[0]

    @property
    def scored_against(self) -> str:
        return score_basis(self.curves.capacity_source)[1]

    @property
    def rmse(self) -> float:
        """RMSE in SOH points over the scored curves inside the training range (NaN when there is none)."""
        from battgai.health.estimation.estimator import rmse_points

        ok = self.scored & ~self.extrapolating
        return rmse_points(self.curves.soh[ok], self.predicted[ok]) if ok.any() else float("nan")

    @property
    def rmse_all(self) -> float:
        """RMSE in SOH points over every scored curve, extrapolating ones included."""
        from battgai.health.estimation.estimator import rmse_points

        ok = self.scored
        return rmse_points(self.curves.soh[ok], self.predicted[ok])

    def table(self):
        """One row per curve, for the CSV download."""
        import pandas as pd

        return pd.DataFrame({"cell_id": self.curves.cell_id, "cycle": self.curves.cycle,
                             "soh_estimate": self.predicted, "soh_labelled": self.curves.soh,
                             "capacity_source": self.curves.capacity_source,
                             "extrapolating": self.extrapolating, "reason": self.reasons})


def estimate_soh(curves: CurveSet, estimator, name: str) -> Estimate:
    """Predict SOH of ``curves`` whose window is observed (others are dropped: their window is cut)."""
    from battgai.health.preprocess import window_observed

    seen = curves.subset(window_observed(curves))
    if len(seen) == 0:
        raise ValueError("no curve starts above 3.88 V under load, so the 3.9 -> 3.5 V window is never observed")
    predicted = np.asarray(estimator.predict(seen), float)
    training = getattr(estimator, "range_", None)
    reasons = training.outside(seen, predicted) if training is not None else [""] * len(seen)
    return Estimate(seen, predicted, name, np.array([bool(r) for r in reasons]), reasons)
