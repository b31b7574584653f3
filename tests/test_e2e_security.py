"""End to end: crafted CIFs viewed in the 3D viewer of a real browser run no script.

A CIF's atom labels, data block name and title fields are text from the file; the
viewer's iframe is same-origin with the app, so a script that ran there could read
and change the whole dashboard. Each crafted CIF is uploaded on the materials page
("Check your own CIF", under a crafted file name), its candidate is viewed with
labels on, and the test asserts that the atoms draw, no dialog opens, the payloads'
marker (``top.__pwned``) is set neither in the page nor in any
frame, nothing was requested from the payloads' ``src=x``, and no exception box or
console error shows.
"""

from __future__ import annotations

import pytest

from tests.test_e2e import (  # noqa: F401 (server and browser are fixtures)
    _assert_clean,
    _nonblank_fraction,
    _open,
    _upload,
    _wait_idle,
    browser,
    needs_materials_model,
    server,
)

pytestmark = [pytest.mark.e2e, needs_materials_model]

IMG = "</script><img src=x onerror=top.__pwned=1;alert(1)>"
SCRIPT = "<script>top.__pwned=2;alert(2)</script>"
SVG = "</script><svg/onload=top.__pwned=3;alert(3)>"  # no white space: a data block name cannot hold any
COMMENT = "<!--<script>top.__pwned=4</script>-->"
HEAD = """_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
"""


def _cif(block: str, head: str, rows: list[tuple[str, str, str]], a: float) -> bytes:
    body = "".join(f'"{label}" {el} {xyz} 1\n' for label, el, xyz in rows)
    return f"data_{block}\n{head}{HEAD.format(a=a)}{body}".encode()


CRAFTED = {
    "atom labels": _cif("labels", "", [(IMG, "Na", "0 0 0"), (SCRIPT, "Cl", "0.5 0.5 0.5"),
                                       (COMMENT, "Na", "0.5 0.5 0")], 5.6),
    "data block name": _cif(SVG, "", [("K1", "K", "0 0 0"), ("Cl1", "Cl", "0.5 0.5 0.5")], 6.3),
    "title fields": _cif("titles", f"_chemical_name_common '{IMG}'\n_publ_section_title\n;\n{SCRIPT}\n{SVG}\n;\n"
                                   f"_journal_name_full '{COMMENT}'\n# {IMG}\n",
                         [("Li1", "Li", "0 0 0"), ("F1", "F", "0.5 0.5 0.5")], 4.0),
}
FILE_NAME = "[x](javascript:top.__pwned=5)<img src=x onerror=alert(5)>.cif"


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_cif_runs_no_script_in_the_viewer(server, browser, case):  # noqa: F811 (the imported fixtures)
    page, errors, served, _ = _open(browser, server, nav="materials")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.get_by_text("Check your own CIF").click()
        _upload(page, "CIF file", FILE_NAME, CRAFTED[case], "chemical/x-cif")
        page.locator('[data-testid="stAlert"]').filter(has_text="added to the table").wait_for(timeout=120_000)
        page.locator('[data-testid="stCheckbox"]').filter(has_text="Labels").locator("label").click()
        page.wait_for_timeout(800)
        _wait_idle(page)
        frame_el = page.locator("iframe").first
        frame_el.scroll_into_view_if_needed()
        page.wait_for_timeout(3000)  # let the viewer load, and any injected handler fire
        assert not dialogs, f"a dialog opened: {dialogs}"
        assert page.evaluate("() => window.__pwned") is None, "a payload ran in the app's page"
        for frame in page.frames:
            assert frame.evaluate("() => window.__pwned") is None, f"a payload ran in {frame.url}"
        assert not [u for u, _ in served if u.rstrip("/").endswith("/x")], "a payload's <img src=x> was loaded"
        frame_el.content_frame.locator("canvas").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        assert _nonblank_fraction(frame_el.screenshot()) > 0.02, "the crafted crystal's atoms did not draw"
        _assert_clean(page, errors, f"materials ({case})")
    finally:
        page.close()
