"""One cycling schema and the loaders that map data onto it.

Every source (the NASA set, a researcher's CSV, the synthetic demo cells) ends up as a
:class:`CyclingData`: one row per sample in the schema columns
``cell_id, cycle, time_s, voltage_v, current_a[, temperature_c, capacity_ah]`` (current negative
for discharge, time in seconds from the start of each cycle record) plus one row per discharge
cycle with its capacity, SOH = capacity / nominal and the conditions (ambient or mean
temperature, mean discharge current). What cannot be mapped raises :class:`MappingError` with a
message written for the researcher.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd

from battgai.uploads.errors import quoted

REQUIRED = ("cycle", "time_s", "voltage_v", "current_a")
OPTIONAL = ("cell_id", "temperature_c", "capacity_ah")
SCHEMA = ("cell_id", *REQUIRED, "temperature_c", "capacity_ah")
#: Conditions used when a file has no temperature column.
DEFAULT_TEMPERATURE_C = 25.0
NASA_NOMINAL_AH = 2.0
#: Where each cycle's capacity comes from (the ``capacity_source`` column): the file's capacity
#: column, or current x time over a discharge that reaches the cell's cut-off, or over one that
#: stops above it. The last is the charge of a partial discharge, not the cell's capacity.
CAPACITY_SOURCES = ("file", "coulomb_full", "coulomb_partial")
#: Sources whose capacity is the cell's: the only ones a score is computed against by default.
FULL_SOURCES = ("file", "coulomb_full")
#: A discharge reaches the cut-off when its lowest loaded voltage lies within this fraction of the
#: cell's loaded voltage range above the cut-off. Near the cut-off the voltage falls steeply, so
#: 10 % of the range (150 mV on a 4.2 -> 2.7 V cell) leaves about 1 % of the charge
#: uncounted, while a discharge stopped on the plateau ends far above it.
CUTOFF_TOL = 0.10

#: Lower-case fragments that identify a source column for each schema field.
_ALIASES: dict[str, tuple[str, ...]] = {
    "cell_id": ("cell_id", "cell", "battery", "barcode", "channel"),
    "cycle": ("cycle", "cycle_index", "cycle_number", "cyc"),
    "time_s": ("time_s", "test_time", "time", "t_s", "elapsed"),
    "voltage_v": ("voltage_v", "voltage", "volt", "ecell", "u_v", "v"),
    "current_a": ("current_a", "current", "curr", "i_a", "i"),
    "temperature_c": ("temperature_c", "temperature", "temp", "t_c"),
    "capacity_ah": ("capacity_ah", "capacity", "discharge_capacity", "qd", "cap"),
}


class MappingError(ValueError):
    """A file that cannot be mapped onto the cycling schema; the message says why."""


@dataclasses.dataclass
class CyclingData:
    """Samples and per-cycle labels of one or more cells in the cycling schema.

    Attributes
    ----------
    samples : DataFrame
        Columns :data:`SCHEMA`; ``temperature_c`` / ``capacity_ah`` may be NaN.
    cycles : DataFrame
        One row per discharge cycle: ``cell_id, cycle, capacity_ah, soh, temperature_c,
        current_a`` (mean discharge current, negative), ``capacity_source`` (one of
        :data:`CAPACITY_SOURCES`).
    nominal_ah : float
        Nominal capacity used for SOH.
    source : str
        Where the data came from (dataset name, file name or "demo").
    notes : list of str
        Conversions made on the way (unit changes, sign flips, defaults), for the user.
    """

    samples: pd.DataFrame
    cycles: pd.DataFrame
    nominal_ah: float
    source: str
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def cells(self) -> list[str]:
        return sorted(self.cycles["cell_id"].unique())

    def to_csv(self) -> bytes:
        """Samples in the schema, with SOH joined per cycle, as CSV bytes."""
        out = self.samples.merge(self.cycles[["cell_id", "cycle", "soh"]], on=["cell_id", "cycle"])
        return out.to_csv(index=False).encode()


def load_nasa(cells: list[str] | None = None, drop_outliers: bool = True) -> CyclingData:
    """NASA PCoE discharge curves in the schema (raises ``battgai.core.data.DataNotFound`` when absent).

    Labels are NASA's ``capacity_ah`` (discharge to 2.7 V) over the 2.0 Ah nominal; conditions
    are the chamber temperature and the mean discharge current of each cycle. Cycles flagged by
    the repackaging's outlier heuristic (truncated records, a run of implausible capacities) are
    dropped unless ``drop_outliers`` is False.

    References
    ----------
    B. Saha and K. Goebel (2007), "Battery Data Set", NASA Ames Prognostics Data Repository.
    """
    from battgai.core import data

    summary = data.load_nasa_summary()
    cells = data.nasa_cells() if cells is None else list(cells)
    if not cells:
        raise ValueError("choose at least one NASA cell")
    summary = summary[summary["cell"].isin(cells)]
    if drop_outliers:
        summary = summary[~summary["flag_outlier"]]
    cycles = pd.DataFrame({
        "cell_id": summary["cell"].to_numpy(),
        "cycle": summary["cycle"].to_numpy(),
        "capacity_ah": summary["capacity_ah"].to_numpy(),
        "soh": summary["capacity_ah"].to_numpy() / NASA_NOMINAL_AH,
        "temperature_c": summary["ambient_temperature_c"].to_numpy(dtype=float),
        "current_a": summary["mean_discharge_current_a"].to_numpy(),
        "capacity_source": "file",
    })
    frames = []
    for cell in cells:
        df = data.load_nasa_curves(cell)
        df.insert(0, "cell_id", cell)
        frames.append(df)
    samples = pd.concat(frames, ignore_index=True)
    samples = samples.merge(cycles[["cell_id", "cycle", "capacity_ah"]], on=["cell_id", "cycle"])
    return CyclingData(samples[list(SCHEMA)], cycles.reset_index(drop=True), NASA_NOMINAL_AH,
                       "NASA PCoE", [])


def guess_mapping(columns: list[str]) -> dict[str, str | None]:
    """Best guess of which source column holds each schema field (None where nothing fits).

    Exact names win over fragments; a source column is used at most once.
    """
    lowered = {c: c.strip().lower().replace(" ", "_").split("(")[0].strip("_") for c in columns}
    mapping: dict[str, str | None] = {}
    used: set[str] = set()
    for field in SCHEMA:
        found = None
        for alias in _ALIASES[field]:
            exact = [c for c, low in lowered.items() if low == alias and c not in used]
            if exact:
                found = exact[0]
                break
        if found is None:
            for alias in _ALIASES[field]:
                if len(alias) < 3:
                    continue
                part = [c for c, low in lowered.items() if alias in low and c not in used]
                if part:
                    found = part[0]
                    break
        mapping[field] = found
        if found is not None:
            used.add(found)
    return mapping


def read_upload(data: bytes, mapping: dict[str, str | None] | None, nominal_ah: float,
                name: str = "upload", *, cutoff_v: float | None = None) -> CyclingData:
    """Parse an uploaded CSV (through :func:`battgai.uploads.read_csv`) and map it onto the schema.

    ``mapping=None`` uses :func:`guess_mapping`; ``cutoff_v`` as in :func:`from_dataframe`. Raises
    :class:`battgai.uploads.errors.UploadError` for an unreadable file and :class:`MappingError` for
    one that cannot be mapped.
    """
    from battgai.uploads import read_csv

    df = read_csv(data)
    mapping = guess_mapping(list(df.columns)) if mapping is None else mapping
    return from_dataframe(df, mapping, nominal_ah, source=name, cutoff_v=cutoff_v)


def from_dataframe(df: pd.DataFrame, mapping: dict[str, str | None], nominal_ah: float,
                   source: str = "upload", *, cutoff_v: float | None = None) -> CyclingData:
    """Map any cycler export onto the schema, detecting units and the sign convention.

    Parameters
    ----------
    df : DataFrame
        The raw table, one row per sample.
    mapping : dict
        Schema field -> source column (None when absent). ``cycle, time_s, voltage_v, current_a``
        are required; ``cell_id, temperature_c, capacity_ah`` are optional.
    nominal_ah : float
        Nominal capacity of the cells in Ah (SOH = capacity / nominal).
    cutoff_v : float, optional
        The cells' discharge cut-off voltage (V). Without it each cell's cut-off is read from its
        own discharges (:func:`reaches_cutoff`).

    Returns
    -------
    CyclingData
        ``notes`` lists every conversion made; ``cycles["capacity_source"]`` says for each cycle
        whether its capacity is the file's, or counted over a full or a partial discharge.

    Notes
    -----
    Detection rules, each reported in ``notes``:

    - current in mA when its largest magnitude exceeds 50 (no single cell this tool targets
      is cycled at 50 A), capacity in mAh when its median exceeds 20x nominal, voltage in mV when
      its median exceeds 100;
    - sign: discharge is where voltage falls under load; when falling voltage goes with positive
      current the sign is flipped so that discharge is negative;
    - time units: the charge counted per discharge must be of the order of the nominal capacity;
      if it is 60x (or 3600x) too small the time column is in minutes (hours);
    - without a capacity column, capacity is counted from current x time, and a discharge that
      stops above the cell's cut-off is marked ``coulomb_partial`` (:func:`reaches_cutoff`).
    """
    if not nominal_ah or not np.isfinite(nominal_ah) or nominal_ah <= 0:
        raise MappingError(f"nominal capacity must be a positive number of Ah, got {nominal_ah!r}")
    if cutoff_v is not None and not (np.isfinite(cutoff_v) and cutoff_v > 0):
        raise MappingError(f"the cut-off voltage must be a positive number of V (or left empty), got {cutoff_v!r}")
    missing = [f for f in REQUIRED if not mapping.get(f)]
    if missing:
        raise MappingError(
            f"Map a column to each of {', '.join(missing)}; the file has: {', '.join(map(quoted, df.columns))}."
        )
    absent = [f"{f} -> {quoted(c)}" for f, c in mapping.items() if c and c not in df.columns]
    if absent:
        raise MappingError(f"Mapped column(s) not in the file: {', '.join(absent)}.")
    notes: list[str] = []
    out = pd.DataFrame(index=df.index)
    for field in SCHEMA:
        col = mapping.get(field)
        if field == "cell_id":
            out[field] = df[col].astype(str) if col else source
            continue
        if not col:
            out[field] = np.nan
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MappingError(f"Column {quoted(col)} ({field}) must be numeric; row {row + 2} holds "
                               f"{quoted(df[col].iloc[row])}.")
        out[field] = values.astype(float)
    for field in REQUIRED:
        nan = out[field].isna().to_numpy()
        if nan.any():
            raise MappingError(
                f"Column {quoted(mapping[field])} ({field}) has {int(nan.sum())} empty / NaN value(s), first "
                f"at row {int(np.flatnonzero(nan)[0]) + 2}; fill or remove those rows first."
            )
    out["cycle"] = out["cycle"].round().astype(int)
    _detect_value_units(out, nominal_ah, notes)
    _check_time(out)
    _detect_sign(out, nominal_ah, notes)
    _detect_time_unit(out, nominal_ah, notes)
    cycles = _cycle_table(out, nominal_ah, notes, cutoff_v)
    return CyclingData(out[list(SCHEMA)].reset_index(drop=True), cycles, float(nominal_ah), source, notes)


def _detect_value_units(out: pd.DataFrame, nominal_ah: float, notes: list[str]) -> None:
    if out["current_a"].abs().max() > 50:
        out["current_a"] /= 1000.0
        notes.append("current looked like mA (|I| > 50); divided by 1000")
    if out["voltage_v"].median() > 100:
        out["voltage_v"] /= 1000.0
        notes.append("voltage looked like mV (median > 100); divided by 1000")
    cap = out["capacity_ah"]
    if cap.notna().any() and cap.median() > 20 * nominal_ah:
        out["capacity_ah"] = cap / 1000.0
        notes.append("capacity looked like mAh (median > 20x nominal); divided by 1000")


def _check_time(out: pd.DataFrame) -> None:
    for (cell, cyc), g in out.groupby(["cell_id", "cycle"], sort=False):
        dt = np.diff(g["time_s"].to_numpy())
        if (dt < 0).any():
            row = int(g.index[int(np.flatnonzero(dt < 0)[0]) + 1])
            raise MappingError(
                f"Time goes backwards in cell {quoted(cell)} cycle {cyc} (row {row + 2}); each cycle's samples "
                "must be in time order. Sort the file or check the cycle column."
            )
    # Each record starts at 0 s so cycles with test-time clocks and cycle clocks look alike.
    out["time_s"] -= out.groupby(["cell_id", "cycle"])["time_s"].transform("min")


def _loaded(out: pd.DataFrame, nominal_ah: float) -> np.ndarray:
    # Under load means more than C/20; below that is rest, CV tail or noise.
    return (out["current_a"].abs() > 0.05 * nominal_ah).to_numpy()


def _detect_sign(out: pd.DataFrame, nominal_ah: float, notes: list[str]) -> None:
    dv = out.groupby(["cell_id", "cycle"])["voltage_v"].diff().to_numpy()
    loaded = _loaded(out, nominal_ah) & np.isfinite(dv) & (np.abs(np.nan_to_num(dv)) > 1e-4)
    if not loaded.any():
        raise MappingError("No sample carries a current above C/20 with a changing voltage: "
                           "the file holds no discharge (rest only, or current in the wrong column).")
    # Charge raises and discharge lowers the voltage, so sign(I) * sign(dV) is +1 in the
    # discharge-negative convention whichever of the two the file holds.
    score = np.mean(np.sign(out["current_a"].to_numpy()[loaded]) * np.sign(dv[loaded]))
    if score < 0:
        out["current_a"] *= -1.0
        notes.append("discharge current was positive; flipped the sign so that discharge is negative")
    discharging = (out["current_a"] < -0.05 * nominal_ah).groupby([out["cell_id"], out["cycle"]]).sum()
    if (discharging < 3).all():
        raise MappingError("The file holds charge data only (voltage rises under load in every cycle); "
                           "this tool needs discharge curves.")


def _coulomb_ah(g: pd.DataFrame) -> float:
    t, i = g["time_s"].to_numpy(), g["current_a"].to_numpy()
    dis = np.clip(-i, 0.0, None)
    return float(np.sum(0.5 * (dis[1:] + dis[:-1]) * np.diff(t)) / 3600.0)


def _detect_time_unit(out: pd.DataFrame, nominal_ah: float, notes: list[str]) -> None:
    q = np.median([_coulomb_ah(g) for _, g in out.groupby(["cell_id", "cycle"], sort=False)])
    ratio = q / nominal_ah
    if ratio < 0.05:
        for factor, unit in ((60.0, "minutes"), (3600.0, "hours")):
            if 0.1 <= ratio * factor <= 2.0:
                out["time_s"] *= factor
                notes.append(f"time looked like {unit} (charge per discharge {ratio:.3g}x nominal); "
                             f"multiplied by {factor:g}")
                return
        raise MappingError(
            f"The charge counted per discharge is {ratio:.2g}x the nominal capacity ({nominal_ah} Ah): "
            "check the nominal capacity and the time and current units."
        )


def reaches_cutoff(end_v: np.ndarray, top_v: np.ndarray, cutoff_v: float | None = None) -> np.ndarray:
    """Which discharges of one cell reach its cut-off voltage, so that their charge is its capacity.

    Parameters
    ----------
    end_v, top_v : ndarray
        Lowest and highest loaded voltage of each discharge of the cell (V).
    cutoff_v : float, optional
        The cut-off, when the researcher states it. Otherwise it is read from the cell's own
        discharges: the lowest end voltage that a second discharge also comes within the
        tolerance of, so one record with a spike far below the others does not set it.

    Returns
    -------
    ndarray of bool
        True where the end voltage lies within :data:`CUTOFF_TOL` x the cell's loaded voltage
        range (median top voltage minus cut-off) of the cut-off, or below it.

    Notes
    -----
    A cell whose every discharge stops early looks full to the rule without a stated cut-off:
    nothing in its own records shows where the cut-off is.
    """
    end_v, top_v = np.asarray(end_v, float), np.asarray(top_v, float)
    ends = np.sort(end_v)
    if cutoff_v is None:
        tol = CUTOFF_TOL * max(float(np.median(top_v) - ends[0]), 0.0)
        shared = np.diff(ends) <= tol
        cutoff_v = float(ends[np.argmax(shared)] if shared.any() else ends[0])
    tol = CUTOFF_TOL * max(float(np.median(top_v)) - cutoff_v, 0.0)
    return end_v <= cutoff_v + tol


def score_basis(capacity_source: np.ndarray) -> tuple[np.ndarray, str]:
    """Which curves a score against the file's capacities uses, and the name of what it is scored against.

    Full discharges only (file capacities and coulomb counts down to the cut-off) when there is
    one; with partial coulomb counts alone, all of them, named "coulomb-counted, partial" so no
    one reads the score as one against the cells' capacities.
    """
    source = np.asarray(capacity_source).astype(str)
    full = np.isin(source, FULL_SOURCES)
    if not full.any():
        return np.ones(len(source), bool), "coulomb-counted, partial"
    kinds = set(source[full])
    name = ("file capacities" if kinds == {"file"} else "coulomb-counted, full discharges"
            if kinds == {"coulomb_full"} else "file capacities and coulomb-counted full discharges")
    return full, name


def _cycle_table(out: pd.DataFrame, nominal_ah: float, notes: list[str], cutoff_v: float | None = None) -> pd.DataFrame:
    rows = []
    has_temp = out["temperature_c"].notna().any()
    for (cell, cyc), g in out.groupby(["cell_id", "cycle"], sort=True):
        dis = g["current_a"] < -0.05 * nominal_ah
        if dis.sum() < 3:
            continue  # charge or rest record: not a discharge cycle
        cap = g["capacity_ah"].dropna()
        loaded_v = g.loc[dis, "voltage_v"]
        rows.append({
            "cell_id": cell, "cycle": int(cyc),
            "capacity_ah": float(cap.iloc[-1]) if len(cap) else _coulomb_ah(g),
            "temperature_c": float(g["temperature_c"].mean()) if has_temp else DEFAULT_TEMPERATURE_C,
            "current_a": float(g.loc[dis, "current_a"].mean()),
            "capacity_source": "file" if len(cap) else "coulomb",
            "end_v": float(loaded_v.min()), "top_v": float(loaded_v.max()),
        })
    cycles = pd.DataFrame(rows)
    if len(cycles) < 2:
        raise MappingError(f"Only {len(cycles)} discharge cycle found; at least 2 cycles are needed "
                           "to see ageing (is the cycle column mapped correctly?).")
    full = pd.Series(False, index=cycles.index)
    for _, g in cycles.groupby("cell_id"):
        full[g.index] = reaches_cutoff(g["end_v"], g["top_v"], cutoff_v)
    counted = cycles["capacity_source"] == "coulomb"
    cycles.loc[counted, "capacity_source"] = np.where(full[counted], "coulomb_full", "coulomb_partial")
    if out["capacity_ah"].isna().all():
        notes.append("no capacity column: capacity counted from current x time over each discharge")
    partial = int((cycles["capacity_source"] == "coulomb_partial").sum())
    if partial:
        where = f"the stated cut-off {cutoff_v:g} V" if cutoff_v is not None else "their cell's lowest end voltage"
        notes.append(f"{partial} of {int(counted.sum())} counted discharges stop above {where} (partial): their "
                     "count is not the cell's capacity, so scores use full discharges only")
    if not has_temp:
        notes.append(f"no temperature column: conditions use {DEFAULT_TEMPERATURE_C:g} C")
    cycles["soh"] = cycles["capacity_ah"] / nominal_ah
    return cycles[["cell_id", "cycle", "capacity_ah", "soh", "temperature_c", "current_a", "capacity_source"]]


def _ocv(soc: np.ndarray) -> np.ndarray:
    # A smooth NMC-like open-circuit voltage: steep near empty, gentle plateau, rise near full.
    return 3.45 + 0.6 * soc - 0.6 * np.exp(-15.0 * soc) + 0.08 * np.tanh(10.0 * (soc - 0.9))


def demo_data(n_cells: int = 4, n_cycles: int = 40, seed: int = 0) -> CyclingData:
    """Small synthetic cells the project makes itself, for when no real data is present.

    Each cell fades linearly from ~98 % to ~75 % SOH with its own rate and temperature; the
    voltage is a smooth open-circuit curve minus an ohmic drop that grows with age. These curves
    are for trying the tool, not for science.
    """
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for k in range(n_cells):
        cell = f"DEMO{k + 1}"
        temp = float(rng.choice([10.0, 25.0, 40.0]))
        current = float(rng.choice([1.0, 2.0]))
        fade = rng.uniform(0.18, 0.28)
        for cyc in range(1, n_cycles + 1):
            soh = 0.98 - fade * (cyc - 1) / max(n_cycles - 1, 1) + rng.normal(0, 0.004)
            cap = soh * NASA_NOMINAL_AH
            r = 0.03 + 0.06 * (1 - soh) + 0.001 * (25 - temp)
            t = np.arange(0.0, cap / current * 3600.0, 20.0)
            soc = 1 - current * t / 3600.0 / cap
            v = _ocv(soc) - current * r + rng.normal(0, 0.002, t.size)
            keep = v >= 2.7
            t, v = t[keep], v[keep]
            frames.append(pd.DataFrame({
                "cell_id": cell, "cycle": cyc, "time_s": t, "voltage_v": v,
                "current_a": -current, "temperature_c": temp + 5 * (t / t[-1]) * current / 2,
                "capacity_ah": cap,
            }))
            rows.append({"cell_id": cell, "cycle": cyc, "capacity_ah": cap, "soh": soh,
                         "temperature_c": temp, "current_a": -current, "capacity_source": "file"})
    return CyclingData(pd.concat(frames, ignore_index=True)[list(SCHEMA)], pd.DataFrame(rows),
                       NASA_NOMINAL_AH, "demo (synthetic, made by battgai)",
                       ["demo data: synthetic cells made by the project, not measurements"])


def template_csv() -> bytes:
    """A small CSV in the schema (two demo cycles) that researchers can fill with their data."""
    demo = demo_data(n_cells=1, n_cycles=2)
    buf = io.StringIO()
    demo.samples.round(4).to_csv(buf, index=False)
    return buf.getvalue().encode()
