"""Widgets for a battery search: element sets, working ion, voltage window, minimum capacity, with presets.

The Campaigns page builds its conditions here instead of a typed string; :func:`conditions_text` writes
them in the form the CLI takes (``battgai.materials.generation.sample.parse_conditions``), so the page and
``python -m battgai campaign`` run the same campaign.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from battgai.materials.generation.sample import CRYSTAL_SYSTEMS, UNSEEN_ELEMENTS

#: Working ions the generator was trained with electrode structures of.
IONS = ("Li", "Na", "K", "Mg", "Zn")
TRANSITION_METALS_LI = ("Mn", "Fe", "Co", "Ni", "V", "Ti", "Cr", "Cu")
#: Starting points a battery researcher picks from; every field stays editable.
PRESETS: dict[str, dict] = {
    "Li-ion cathode": {"ion": "Li", "allowed": ("Li", *TRANSITION_METALS_LI, "O", "P", "S", "F", "Si"),
                       "required": ("Li",), "v_window": (3.0, 4.5), "min_capacity": 120.0},
    "Na-ion cathode": {"ion": "Na", "allowed": ("Na", "Mn", "Fe", "V", "Ti", "Ni", "O", "P", "S", "F"),
                       "required": ("Na",), "v_window": (2.0, 4.0), "min_capacity": 100.0},
    "Li-ion anode": {"ion": "Li", "allowed": ("Li", "Ti", "Nb", "Si", "Sn", "Ge", "O", "C", "P"),
                     "required": ("Li",), "v_window": (0.05, 1.8), "min_capacity": 150.0},
    "Custom (no battery objective)": {"ion": None, "allowed": (), "required": (), "v_window": None,
                                      "min_capacity": 0.0},
}


@dataclasses.dataclass(frozen=True)
class BatteryConditions:
    """What the widgets chose."""

    allowed: tuple[str, ...]
    required: tuple[str, ...]
    ion: str | None
    system: str
    n_atoms: int
    v_min: float | None
    v_max: float | None
    min_capacity: float


def element_symbols() -> list[str]:
    """Elements the generator can write (pymatgen's table less those in no training crystal)."""
    from pymatgen.core import Element

    return [e.symbol for e in Element if e.Z <= 94 and e.symbol not in UNSEEN_ELEMENTS]


def conditions_text(c: BatteryConditions) -> str:
    """The conditions in the CLI's ``key=value;...`` form (battery target excluded: it has its own options)."""
    parts = []
    if c.allowed:
        parts.append("allowed=" + ",".join(c.allowed))
    if c.required:
        parts.append("required=" + ",".join(c.required))
    if c.ion:
        parts.append(f"ion={c.ion}")
    if c.system != "any":
        parts.append(f"system={c.system}")
    if c.n_atoms:
        parts.append(f"natoms={c.n_atoms}")
    return ";".join(parts)


def battery_conditions(key: str) -> BatteryConditions:
    """Draw the widgets (inside a form or not) and return what they hold; keys start with ``key``."""
    name = st.session_state.get(f"{key}_preset", next(iter(PRESETS)))
    preset, tag = PRESETS[name], list(PRESETS).index(name)  # a new preset gets new widget keys: it refills them
    c1, c2, c3 = st.columns(3)
    ion = c1.selectbox("Working ion", ["none", *IONS], key=f"{key}_ion_{tag}",
                       index=1 + IONS.index(preset["ion"]) if preset["ion"] else 0,
                       help="Every found crystal holds it; voltage and capacity are those of removing it all.")
    allowed = c1.multiselect("Allowed elements (empty: any)", element_symbols(), default=list(preset["allowed"]),
                             key=f"{key}_allowed_{tag}")
    required = c1.multiselect("Required elements", element_symbols(), default=list(preset["required"]),
                              key=f"{key}_required_{tag}")
    window = preset["v_window"] or (0.0, 6.0)
    use_window = c2.checkbox("Voltage window", value=preset["v_window"] is not None, key=f"{key}_use_window_{tag}",
                             help="Average voltage vs the ion's metal (CHGNet static proxy, MAE 0.20 V vs DFT).")
    v_min, v_max = c2.slider("Voltage (V)", 0.0, 6.0, (float(window[0]), float(window[1])), step=0.05,
                             key=f"{key}_window_{tag}")
    min_capacity = c2.number_input("Minimum capacity (mAh/g)", 0.0, 4000.0, float(preset["min_capacity"]),
                                   step=10.0, key=f"{key}_capacity_{tag}",
                                   help="Theoretical gravimetric capacity of removing every working ion.")
    system = c3.selectbox("Crystal system", ["any", *CRYSTAL_SYSTEMS], key=f"{key}_system")
    n_atoms = c3.number_input("Atoms per primitive cell (0 = any)", 0, 20, 0, key=f"{key}_natoms")
    ion_value = None if ion == "none" else ion
    return BatteryConditions(tuple(allowed), tuple(required), ion_value, system, int(n_atoms),
                             v_min if use_window else None, v_max if use_window else None, float(min_capacity))


def preset_picker(key: str) -> None:
    """The preset the widgets start from (outside the form, so choosing one refills them at once)."""
    st.selectbox("Start from", list(PRESETS), key=f"{key}_preset",
                 help="Fills the elements, ion, voltage window and capacity; change any of them after.")
