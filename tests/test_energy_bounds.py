"""Energies and relaxations have bounds checked before any work: atoms per relaxation, packing density.

No potential is loaded here: the bounds must refuse before that.
"""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Lattice, Structure

from battgai.core.demo import licoo2
from battgai.materials import pipeline
from battgai.materials.checks import stability
from battgai.materials.generation.sample import Conditions


@pytest.fixture
def no_potential(monkeypatch):
    """Any attempt to load or run a potential fails the test; element coverage is CHGNet's (H to Pu)."""

    def fail(*args, **kwargs):
        raise AssertionError("a potential was loaded: the bound was not checked first")

    monkeypatch.setattr(stability, "_covered_numbers", lambda potential: frozenset(range(1, 95)))
    monkeypatch.setattr(stability, "load_chgnet", fail)
    monkeypatch.setattr(stability, "load_sevennet", fail)


def _dense() -> Structure:
    # Structurally valid (atoms 0.69 A apart, CDVAE asks 0.5) but 0.26 A^3 per atom: one static CHGNet energy of it
    # ran out of 5 GB.
    return Structure(Lattice.cubic(0.8), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _big() -> Structure:
    s = licoo2().copy()
    s.make_supercell([3, 2, 1])  # 72 atoms
    assert len(s) > stability.MAX_RELAX_ATOMS
    return s


def test_a_densely_packed_crystal_gets_no_energy_before_any_work(no_potential):
    assert "packed too densely" in stability.energy_problem(_dense())
    assert math.isnan(stability.static_energies([_dense()])[0])
    with pytest.raises(stability.RelaxationError, match="packed too densely"):
        stability.relax(_dense())
    cand = pipeline.check(_dense(), Conditions(), None, source="uploaded")
    assert cand.valid_structure
    pipeline.add_energies([cand], None, relax=False)
    assert math.isnan(cand.e_per_atom) and cand.note.startswith("no energy: its atoms are packed too densely")


def test_too_many_atoms_for_a_relaxation_get_a_static_energy_and_a_note(no_potential, monkeypatch):
    with pytest.raises(stability.RelaxationError, match=f"at most {stability.MAX_RELAX_ATOMS} atoms"):
        stability.relax(_big())
    monkeypatch.setattr(stability, "static_energies", lambda structures, potential="chgnet": [-5.0])
    cand = pipeline.check(_big(), Conditions(), None, source="uploaded")
    pipeline.add_energies([cand], None, relax=True)
    assert cand.e_per_atom == -5.0 and not cand.relaxed
    assert cand.note.startswith("not relaxed, static energy: 72 atoms; a relaxation takes at most 64 atoms")


def test_real_crystals_pass_the_bounds():
    assert stability.energy_problem(licoo2()) is None
    assert stability.energy_problem(licoo2(), relax=True) is None
