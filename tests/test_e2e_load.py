"""Three researchers at once, in real browsers: the small version of ``python -m battgai.bench load``.

One session per page's main action (materials Generate, microstructure Denoise, health Generate), all pressed at
the same moment against one real server: every session finishes, no exception box, no session sees another's
work, and each session's run is finished in the server's run store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                       reason="Debian chromium is not installed (make test installs it)"),
    pytest.mark.skipif(not list((ROOT / "weights").glob("materials_*.json")), reason="no bundled materials model"),
]


def test_three_sessions_at_once_finish_without_leakage(tmp_path):
    from battgai.bench import load as loadbench
    from battgai.core.runs import RunStore

    # 10 candidates requiring O: a required element is a marker every crystal must hold, and O is the cheap one
    # (Li needs about 9 samples per crystal kept, O about 4), so the test stays near a minute of sampling.
    result = loadbench.run_load(3, candidates=10, elements=("O",), home=tmp_path,
                                log=ROOT / "artifacts" / "load_server.log")
    detail = loadbench.details(result)
    print("\n" + detail + "\n" + loadbench.HEADER + "\n" + loadbench.row(result))
    assert [s.page for s in result.sessions] == list(loadbench.PAGES)
    assert result.finished == 3, detail
    assert result.exceptions == 0, detail
    assert result.leakage == 0, detail
    for session in result.sessions:
        record = RunStore(tmp_path).get(session.run_id)
        assert (record.task, record.status) == (loadbench.RUN_TASK[session.page], "finished"), detail
    assert result.idle_render_s, "no idle page was timed while the sessions worked"
