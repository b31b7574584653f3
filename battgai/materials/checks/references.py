"""Which known structures and reference phases a check uses.

The bundle (:mod:`battgai.materials.checks.bundle`) only loads files; the choice between it and the
shared data lives here because it needs the energies (:mod:`battgai.materials.checks.stability`)
and the corpus, which themselves read the bundle. Both are cached per process: a worker of the engine
builds them once, for every job it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from battgai.materials.checks.bundle import BundleError, KnownPhases, load_known_phases


@functools.cache
def known_phases() -> tuple[KnownPhases | None, str]:
    """Every known phase on hand, what "new" means for a discovery, and a line saying what it holds.

    Always the bundled index (:func:`~battgai.materials.checks.bundle.load_known_phases`: all MP-20
    splits, MPTS-52 val and test, every insertion-electrode structure), so a bare clone and a machine
    with the shared data judge the same way; ``None`` when the bundle is damaged.
    """
    try:
        index = load_known_phases()
    except BundleError as exc:
        return None, f"newness not checked: {exc}"
    return index, f"new = matches none of {index.n_structures:,} known phases (MP-20 all splits, MPTS-52, electrodes)"


@functools.cache
def training_structures() -> tuple[Mapping | None, str]:
    """The generator's training structures, what the generator benchmark's novelty (CDVAE's) is judged against.

    The shared MP-20 data when ``BATTGAI_DATA_DIR`` has it, else the bundled index's training view.
    """
    from battgai.core import data
    from battgai.materials.training.corpus import training_cifs_by_formula

    try:
        known = training_cifs_by_formula()
        return known, f"novelty vs the shared MP-20 data ({sum(map(len, known.values())):,} training structures)"
    except data.DataNotFound:
        pass
    index = known_phases()[0]
    if index is None:
        return None, f"novelty not checked: no shared MP-20 data and {known_phases()[1]}"
    view = index.training()
    return view, f"novelty vs the bundled index ({view.n_structures:,} training structures; no shared data found)"


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
