"""The load bench's bookkeeping, without a browser: who gets which marker, what counts as leakage, the table."""

from __future__ import annotations

import io
import json
import math
import zipfile
from types import SimpleNamespace

import pytest

from battgai import bench
from battgai.bench import load as loadbench


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _record(files: dict[str, bytes], title: str = "", provenance: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(read=files.__getitem__, title=title, provenance=provenance)


def test_plan_deals_pages_round_robin_with_distinct_markers():
    sessions = loadbench.plan(20)
    assert [s.page for s in sessions[:4]] == ["materials", "microstructure", "health", "materials"]
    for page in loadbench.PAGES:
        markers = [s.marker for s in sessions if s.page == page]
        assert len(set(markers)) == len(markers), page
    assert [s.marker for s in sessions if s.page == "materials"][:3] == ["Li", "Na", "Mg"]
    with pytest.raises(ValueError, match="distinct required elements"):
        loadbench.plan(4, elements=("Li",))


def test_a_crystal_without_the_sessions_element_is_leakage():
    session = loadbench.plan(1)[0]
    own = b"formula\nLiFePO4\nLi2O\n"
    assert loadbench._problems(session, _zip({"checks.csv": own}), _record({"checks.csv": own}), 50) == []
    assert session.note == "2 of 50 candidates"
    foreign = b"formula\nLiFePO4\nNaCl\n"
    problems = loadbench._problems(session, _zip({"checks.csv": foreign}), _record({"checks.csv": own}), 50)
    assert any("lack Li: NaCl" in p for p in problems) and any("its run does not" in p for p in problems)


def test_curves_at_another_sessions_soh_are_leakage():
    session = loadbench.plan(3)[2]
    key = "conditions (SOH, T C, |I| A)"
    mine = {"settings": {key: [[0.95, 24, 2], [0.85, 24, 2], [0.75, 24, 2]], "nominal_ah": 2.0}}
    theirs = {"settings": {key: [[0.945, 24, 2], [0.845, 24, 2], [0.745, 24, 2]], "nominal_ah": 2.0}}
    csv = b"capacity_ah\n1.9\n1.7\n1.5\n"
    page = _zip({"provenance.json": json.dumps(mine).encode(), "synthetic_curves.csv": csv})
    assert loadbench._problems(session, page, _record({}, provenance=mine), 50) == []
    assert loadbench._problems(session, page, _record({}, provenance=theirs), 50) == [
        "the run holds SOH [0.745, 0.845, 0.945], asked [0.75, 0.85, 0.95]"]


def test_section_keeps_other_session_counts_and_replaces_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")

    def result(n: int, peak: float) -> loadbench.LoadResult:
        sessions = loadbench.plan(n)
        for s in sessions:
            s.finished, s.total_s = True, 10.0
        sessions[0].finished, sessions[0].timed_out = False, True
        return loadbench.LoadResult(sessions, 50, 1, 1200, 500.0, peak, 3 * peak, [1.0, 2.0], 0.5, "2026-12-03")

    for n, peak in ((10, 1000.0), (20, 2000.0), (10, 1100.0)):
        bench.write_section("load", loadbench.section(result(n, peak), loadbench._kept_rows()))
    rows = loadbench._kept_rows()
    assert [r.split("|")[1].strip() for r in rows] == ["10 (4 / 3 / 3)", "20 (7 / 7 / 6)"]
    assert "500 / 1,100 | 3,300 |" in rows[0] and "500 / 2,000 | 6,000 |" in rows[1]
    assert "1.5 / 1.9 / 2.0 (2)" in rows[0] and "10 / 10 (1 out of time at 1200 s)" in rows[0]
    assert bench.read_section("materials") == ""


def test_median_max_skips_sessions_without_a_time():
    assert loadbench._median_max([3.0, math.nan, 5.0, 10.0]) == "5 / 10"
    assert loadbench._median_max([]) == "–"
