"""What a battery campaign counts as found: new, stable, with the working ion, in the voltage window, enough capacity.

A campaign without a working ion keeps the generic rule (S.U.N.: stable, unique, new). With one, a
crystal is **found** when all of these hold:

- it is new: it matches no known phase on hand (:func:`~battgai.materials.checks.references.known_phases`)
  and no crystal found earlier in the campaign;
- it is stable and not suspect (:func:`~battgai.materials.checks.evaluate.is_stable`, CHGNet E_hull);
- it holds the working ion and at least one other element (an elemental phase stores nothing);
- its average voltage of removing every ion (:func:`~battgai.materials.checks.battery.candidate_voltage`,
  the materials page's proxy) lies inside the window;
- its theoretical gravimetric capacity (:func:`~battgai.materials.checks.battery.capacity_grav`) is at least
  the minimum.

The reward of reward fine-tuning applies the same rule (:mod:`battgai.materials.discovery.reward`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from battgai.materials.checks import battery, evaluate


@dataclasses.dataclass(frozen=True)
class BatteryTarget:
    """The battery part of a campaign's conditions (``ion=None``: no battery objective).

    ``v_min`` / ``v_max`` in V vs the ion's metal (``None``: open), ``min_capacity`` in mAh/g.
    """

    ion: str | None = None
    v_min: float | None = None
    v_max: float | None = None
    min_capacity: float = 0.0

    @property
    def active(self) -> bool:
        return self.ion is not None

    def describe(self) -> str:
        if not self.active:
            return "found = stable (CHGNet E_hull < 0.1 eV/atom, not suspect), unique and new against every known phase"
        lo = "-inf" if self.v_min is None else f"{self.v_min:g}"
        hi = "inf" if self.v_max is None else f"{self.v_max:g}"
        return (f"found = new against every known phase, stable (CHGNet E_hull < 0.1 eV/atom, not suspect), holds "
                f"{self.ion} and another element, average voltage {lo}-{hi} V vs {self.ion}, capacity >= "
                f"{self.min_capacity:g} mAh/g")

    def problems(self, allowed: Iterable[str] = (), required: Iterable[str] = (), refs=None) -> list[str]:
        """Reasons no crystal can be found under this target and element set (empty when one can)."""
        out = []
        if not self.active:
            if self.v_min is not None or self.v_max is not None or self.min_capacity > 0:
                out.append("A voltage window or a minimum capacity needs a working ion (Li, Na, ...): the voltage "
                           "and the capacity are those of removing that ion.")
            return out
        if self.ion not in battery.ION_CHARGE:
            out.append(f"Working ion {self.ion!r} is not one of {', '.join(sorted(battery.ION_CHARGE))}.")
            return out
        if self.v_min is not None and self.v_max is not None and self.v_min >= self.v_max:
            out.append(f"The voltage window {self.v_min:g}-{self.v_max:g} V is empty.")
        if self.min_capacity < 0 or not math.isfinite(self.min_capacity):
            out.append(f"The minimum capacity must be a number >= 0 mAh/g, got {self.min_capacity}.")
        allowed = tuple(allowed)
        if allowed and self.ion not in allowed:
            out.append(f"The working ion {self.ion} is not among the allowed elements ({', '.join(allowed)}).")
        best, partner = max_capacity(self.ion, [e for e in allowed if e != self.ion] if allowed else None)
        if self.min_capacity > best:
            out.append(f"No charge-neutral composition of {self.ion} with the allowed elements reaches "
                       f"{self.min_capacity:g} mAh/g: the most is {best:.0f} mAh/g"
                       + (f" ({partner})." if partner else "."))
        if refs is not None:
            missing = refs.uncovered({*allowed, *required, self.ion})
            if missing:
                out.append(f"The reference phases cannot judge the stability of crystals with {', '.join(missing)} "
                           "(no elemental phase or no CHGNet parameters); leave them out.")
        return out

    def found(self, rec: dict) -> bool:
        """Whether a judged crystal's record counts as found (keys: ``e_hull``, ``unique``, ``new``,
        ``formula``, ``voltage``, ``capacity``)."""
        if not (rec.get("relaxed") and rec.get("unique") and rec.get("new") and evaluate.is_stable(rec["e_hull"])):
            return False
        return not self.active or self.battery_ok(rec["formula"], rec["voltage"], rec["capacity"])

    def battery_ok(self, formula: str, voltage: float, capacity: float) -> bool:
        """The battery part of :meth:`found`: the ion and another element, voltage in the window, capacity."""
        from pymatgen.core import Composition

        els = {el.symbol for el in Composition(formula).elements}
        if self.ion not in els or len(els) < 2:
            return False
        return self.voltage_ok(voltage) and capacity >= self.min_capacity

    def composition_ok(self, composition) -> bool:
        """What can be judged from the composition alone (before any energy): ion, another element, capacity."""
        els = {el.symbol for el in composition.elements}
        return (self.ion in els and len(els) >= 2
                and battery.capacity_grav(composition, self.ion) >= self.min_capacity)

    def voltage_ok(self, voltage: float, margin: float = 0.0) -> bool:
        if not math.isfinite(voltage):
            return False
        return ((self.v_min is None or voltage >= self.v_min - margin)
                and (self.v_max is None or voltage <= self.v_max + margin))


def max_capacity(ion: str, partners: Iterable[str] | None = None) -> tuple[float, str]:
    """Most theoretical capacity (mAh/g) of a charge-neutral compound of ``ion`` with ``partners`` (None: any).

    Maximising charge per mass under one charge-balance constraint is a linear-fractional programme whose
    optimum sits at a vertex with two species, so the best compound is the ion with one anion in one of its
    (pymatgen) negative oxidation states, in the neutral ratio: an exact bound for formal-charge-neutral
    compositions, however many elements they hold. Returns ``(capacity, partner formula)``.

    Examples
    --------
    >>> cap, partner = max_capacity("Li", ["Mn", "O", "F"])
    >>> round(cap), partner
    (1794, 'Li2O')
    """
    from pymatgen.core import Composition, Element

    z = battery.ION_CHARGE[ion]
    pool = [e.symbol for e in Element] if partners is None else list(partners)
    best, label = 0.0, ""
    for sym in pool:
        try:
            states = [s for s in Element(sym).oxidation_states if s < 0]
        except ValueError:
            continue
        for s in states:
            # z ions per |s| anions: capacity of removing every ion from Ion_|s| X_z.
            comp = Composition({ion: abs(s), sym: z})
            cap = battery.capacity_grav(comp, ion)
            if cap > best:
                best, label = cap, comp.reduced_formula
    return best, label

