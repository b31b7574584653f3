"""Which known structures and reference phases a check uses: the shared MP-20 data when present, else the bundle.

The bundle (:mod:`battgai.materials.checks.bundle`) only loads files; the choice between it and the
shared data lives here because it needs the energies (:mod:`battgai.materials.checks.stability`)
and the corpus, which themselves read the bundle. Both are cached per process: a worker of the engine
builds them once, for every job it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from battgai.materials.checks.bundle import BundleError, load_novelty_index


@functools.cache
def known_structures() -> tuple[Mapping | None, str]:
    """Training structures to judge novelty against, and a line saying which ones are in use.

    The shared MP-20 data when ``BATTGAI_DATA_DIR`` has it, else the bundled index, else ``None``.
    """
    from battgai.core import data
    from battgai.materials.training.corpus import training_cifs_by_formula

    try:
        known = training_cifs_by_formula()
        return known, f"novelty vs the shared MP-20 data ({sum(map(len, known.values())):,} training structures)"
    except data.DataNotFound:
        pass
    try:
        index = load_novelty_index()
    except BundleError as exc:
        return None, f"novelty not checked: no shared MP-20 data and {exc}"
    return index, f"novelty vs the bundled index ({index.n_structures:,} training structures; no shared data found)"


@functools.cache
def reference_phases(potential: str = "chgnet"):
    """MP-20 reference phases for E_hull with ``potential``, and a line saying which ones are in use.

    The shared MP-20 data when present (bundled CHGNet energies spare recomputing), else the
    bundle (CHGNet only), else ``None``.
    """
    from battgai.core import data
    from battgai.materials.checks.stability import POTENTIAL_LABELS, ReferencePhases

    try:
        refs = ReferencePhases.from_mp20(potential)
        return refs, f"E_hull vs the shared MP-20 data ({len(refs.ids):,} phases)"
    except data.DataNotFound:
        pass
    if potential != "chgnet":
        return None, (f"no E_hull with {POTENTIAL_LABELS[potential]}: the bundled reference energies are CHGNet's; "
                      "the shared MP-20 data (BATTGAI_DATA_DIR) is needed for other potentials")
    try:
        refs = ReferencePhases.from_bundle()
    except BundleError as exc:
        return None, f"no E_hull: no shared MP-20 data and {exc}"
    return refs, f"E_hull vs the bundled MP-20 references ({len(refs.ids):,} phases, CHGNet; no shared data found)"
