"""Heavy health steps refuse oversized work before it starts, with the limit in the message."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from battgai.health import workflow
from battgai.health.schema import demo_data


def test_generation_over_the_curve_limit_is_refused_before_sampling():
    per_soh = workflow.MAX_GENERATED_CURVES // 10 + 1
    with pytest.raises(ValueError, match=f"the limit is {workflow.MAX_GENERATED_CURVES:,}"):
        workflow.target_conditions([0.9] * 10, 25.0, 2.0, per_soh)
    assert len(workflow.target_conditions([0.9] * 10, 25.0, 2.0, per_soh - 1)) <= workflow.MAX_GENERATED_CURVES


def test_an_upload_with_too_many_cycles_is_refused_before_resampling(monkeypatch):
    data = demo_data()
    monkeypatch.setattr(workflow, "MAX_CYCLES", len(data.cycles) - 1)
    with pytest.raises(ValueError, match=f"holds {len(data.cycles):,} discharge cycles"):
        workflow.from_upload(data)
    monkeypatch.setattr(workflow, "MAX_CYCLES", len(data.cycles))
    assert len(workflow.from_upload(dataclasses.replace(data, cycles=pd.DataFrame(data.cycles))).curves) > 0


def test_the_quick_experiment_names_its_cell_bounds():
    assert "at least 3 cells" in workflow.experiment_problem(2)
    most = workflow.MAX_EXPERIMENT_CELLS
    assert workflow.experiment_problem(3) is None and workflow.experiment_problem(most) is None
    assert f"at most {most} cells" in workflow.experiment_problem(most + 1)
