"""Where the shared real data lives and typed loaders for it.

One setting, ``BATTGAI_DATA_DIR`` (default ``../shared/data`` relative to the
repository root), decides where every dataset is read from. Nothing is copied
into the repository. When a dataset is missing, loaders raise
:class:`DataNotFound` with a message naming the path and the setting, and
callers fall back to the small demo data the project makes itself.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from battgai.core.registry import REPO_ROOT

#: dataset key -> (folder under the data dir, what it is)
DATASETS: dict[str, tuple[str, str]] = {
    "mp_20": ("materials/mp_20_biternary", "MP-20 val/test structures with properties"),
    "mp_20_cif_only": ("materials/mp_20_cif_only", "MP-20 structures (CIF only)"),
    "mp_20_pilot": ("materials/mp_20_pilot", "1,000-row MP-20 train/val/test samples"),
    "mpts_52": ("materials/mpts_52", "MPTS-52 val/test structures (time split of MP)"),
    "insertion_electrodes": (
        "materials/insertion_electrodes_transformergnn",
        "MP insertion-electrode voltage pairs",
    ),
    "microstructure": ("microstructure", "electrode CT / SEM images and 3D volumes"),
    "nasa_pcoe": ("cycling/nasa_pcoe", "NASA discharge curves, 15 cells"),
    "cycling_features": ("cycling", "per-cycle features of 387 cells, four labs"),
}


class DataNotFound(FileNotFoundError):
    """A shared dataset is not where ``BATTGAI_DATA_DIR`` says it is."""


def data_dir() -> Path:
    """The shared data folder (``BATTGAI_DATA_DIR``, default ``../shared/data``)."""
    env = os.environ.get("BATTGAI_DATA_DIR")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data")


def dataset_path(key: str) -> Path:
    """Folder of dataset ``key`` (see :data:`DATASETS`), or raise :class:`DataNotFound`."""
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {key!r}; known: {sorted(DATASETS)}")
    path = data_dir() / DATASETS[key][0]
    if not path.exists():
        raise DataNotFound(
            f"dataset {key!r} not found at {path}. Set BATTGAI_DATA_DIR to the folder "
            "holding materials/, microstructure/ and cycling/; the app uses demo data meanwhile."
        )
    return path


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
    key: str
    description: str
    path: Path
    found: bool


def status() -> list[DatasetStatus]:
    """Which datasets are present, for the home page."""
    out = []
    for key, (rel, desc) in DATASETS.items():
        path = data_dir() / rel
        out.append(DatasetStatus(key, desc, path, path.exists()))
    return out


def load_mp20(split: str = "test") -> pd.DataFrame:
    """MP-20 structures with properties (binary + ternary val/test).

    Columns: ``material_id, formation_energy_per_atom, band_gap, pretty_formula,
    e_above_hull, elements, cif, spacegroup.number``.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    return pd.read_csv(dataset_path("mp_20") / f"{split}.csv.gz", index_col=0)


def load_nasa_summary() -> pd.DataFrame:
    """One row per NASA (cell, discharge cycle) with ``capacity_ah`` and conditions."""
    return pd.read_csv(dataset_path("nasa_pcoe") / "cycle_summary.csv")


def nasa_cells() -> list[str]:
    """Cells of the NASA set that have discharge curves."""
    return sorted(p.name.split(".")[0] for p in (dataset_path("nasa_pcoe") / "discharge").glob("*.csv.gz"))


def load_nasa_curves(cell: str) -> pd.DataFrame:
    """All discharge samples of one NASA cell (``cycle, time_s, voltage_v, current_a, temperature_c``)."""
    path = dataset_path("nasa_pcoe") / "discharge" / f"{cell}.csv.gz"
    if not path.exists():
        raise DataNotFound(f"no NASA discharge file for cell {cell!r} at {path}")
    return pd.read_csv(path, usecols=["cycle", "time_s", "voltage_v", "current_a", "temperature_c"])


def load_image(relpath: str) -> np.ndarray:
    """Read a microstructure image or stack (TIFF / PNG) under ``microstructure/``."""
    path = dataset_path("microstructure") / relpath
    if not path.exists():
        raise DataNotFound(f"no microstructure file {relpath!r} at {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage.io import imread

    return imread(path)
