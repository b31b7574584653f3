"""What a battery campaign counts as found, the bad input it refuses, and the distribution guard."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from battgai.materials.discovery.guard import DistributionGuard
from battgai.materials.discovery.objective import BatteryTarget, max_capacity

LI_CATHODE = BatteryTarget("Li", 3.0, 4.5, 120.0)


def rec(formula: str, voltage: float = 3.8, e_hull: float = 0.02, capacity: float | None = None, **kw) -> dict:
    from battgai.materials.checks.battery import capacity_grav

    cap = capacity_grav(formula, "Li") if capacity is None else capacity
    return {"relaxed": True, "unique": True, "new": True, "e_hull": e_hull, "formula": formula, "voltage": voltage,
            "capacity": cap} | kw


def test_found_needs_the_ion_another_element_the_window_and_the_capacity():
    assert LI_CATHODE.found(rec("LiMnO2"))
    assert not LI_CATHODE.found(rec("Li", voltage=math.nan))  # elemental Li: stores nothing (campaign issue)
    assert not LI_CATHODE.found(rec("MnO2", voltage=math.nan))  # no working ion
    assert not LI_CATHODE.found(rec("LiMnO2", voltage=2.5))  # below the window
    assert not LI_CATHODE.found(rec("LiMnO2", voltage=math.nan))
    assert not LI_CATHODE.found(rec("LiMnO2", capacity=90.0))
    assert not LI_CATHODE.found(rec("LiMnO2", e_hull=-0.2))  # suspect: never found
    assert not LI_CATHODE.found(rec("LiMnO2", new=False))  # a known phase, e.g. a held-out MP crystal
    assert not LI_CATHODE.found(rec("LiMnO2", unique=False))
    plain = BatteryTarget()  # no ion: S.U.N.
    assert plain.found(rec("MnO2", voltage=math.nan)) and not plain.active


def test_the_capacity_bound_is_the_best_binary_with_an_anion():
    assert max_capacity("Li", ["O"]) == pytest.approx((1794.3, "Li2O"), abs=0.5)
    cap, partner = max_capacity("Na", ["Mn", "Fe", "V", "Ti", "Ni", "O", "P", "S", "F"])
    assert partner == "Na2O" and cap == pytest.approx(864.9, abs=0.5)
    assert max_capacity("Li", ["Mn", "Fe"])[0] < max_capacity("Li", ["Mn", "Fe", "O"])[0]
    # Real Li-O-F compounds stay below the bound.
    from battgai.materials.checks.battery import capacity_grav

    bound = max_capacity("Li", ["O", "F"])[0]
    assert all(capacity_grav(f, "Li") <= bound for f in ("Li2O", "LiF", "Li2O2", "Li3OF"))


class Refs:
    def uncovered(self, elements):
        return sorted(e for e in elements if e in ("Xe",))


def test_bad_input_is_refused_with_a_reason():
    assert "needs a working ion" in BatteryTarget(None, 3.0, None).problems()[0]
    assert "needs a working ion" in BatteryTarget(None, min_capacity=100).problems()[0]
    assert "empty" in BatteryTarget("Li", 4.0, 3.0).problems(["Li", "O"])[0]
    (why,) = BatteryTarget("Li", 3.0, 4.5, 2500).problems(["Li", "Mn", "O"])
    assert "2500 mAh/g" in why and "1794" in why
    assert "not among the allowed" in BatteryTarget("Li").problems(["Na", "O"])[0]
    assert "Xe" in BatteryTarget("Li").problems(["Li", "O", "Xe"], refs=Refs())[0]
    assert BatteryTarget("Li", 3.0, 4.5, 120).problems(["Li", "Mn", "O"], ["Li"], Refs()) == []


def _cubic(els: list[str], a: float) -> Structure:
    return Structure(Lattice.cubic(a), els, [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_the_guard_penalises_what_the_batch_over_represents():
    ref = [_cubic(["Li", "O"], 3.0), _cubic(["Mn", "O"], 3.0), _cubic(["Fe", "O"], 3.0), _cubic(["Li", "F"], 3.0)]
    guard = DistributionGuard.from_structures(ref, weight=1.0)
    same = guard.distances(ref)
    assert same["element_tv"] == pytest.approx(0.0) and same["density_w1"] == pytest.approx(0.0)
    # A batch collapsed onto one heavy chemistry: its crystals lose reward, a crystal like the reference gains.
    batch = [_cubic(["La", "Rh"], 3.0)] * 6 + [_cubic(["Li", "O"], 3.0), None]
    pen = guard.penalty(batch)
    assert pen[0] > 0 and pen[6] < pen[0] and pen[7] == 0
    assert np.all(np.abs(pen) <= 2.0)
    assert guard.distances(batch)["element_tv"] > 0.5
    with pytest.raises(ValueError, match="no training crystal"):
        DistributionGuard.from_structures([])
