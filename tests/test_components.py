"""Components: pure builders tested without a browser (the e2e tests check them rendered)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from battgai.core.demo import licoo2
from battgai.core.provenance import Provenance
from components.curve_plot import Curve, curve_figure
from components.download import bundle
from components.image_compare import compare_figure, display_stride
from components.structure_viewer import LOCAL_3DMOL_JS, UNKNOWN_SYMBOL, script_json, structure_html

PAYLOAD = "</script><img src=x onerror=alert(1)><!--"


def _embedded(html: str) -> dict:
    """The JSON the viewer embeds (``const spec = ...;``)."""
    line = next(s for s in html.splitlines() if s.startswith("const spec = "))
    return json.loads(line.removeprefix("const spec = ").removesuffix(";"))


def test_structure_viewer_uses_local_3dmol_only():
    html = structure_html(licoo2(), supercell=(2, 1, 1), labels=True)
    assert LOCAL_3DMOL_JS in html
    assert "cdn" not in html.lower() and "https://" not in html
    texts = [lab["text"] for lab in _embedded(html)["labels"]]
    assert sorted(texts) == sorted([s.specie.symbol for s in licoo2()] * 2)
    with pytest.raises(ValueError, match="style"):
        structure_html(licoo2(), style="cartoon")
    with pytest.raises(ValueError, match="supercell"):
        structure_html(licoo2(), supercell=(0, 1, 1))


def _crafted_structure():
    """NaCl + a disordered site + a dummy species, with the payload in every label and a site property."""
    from pymatgen.core import DummySpecies, Lattice, Structure

    s = Structure(Lattice.from_parameters(4, 4.2, 4.4, 90, 95, 90),
                  ["Na", "Cl", {"Fe": 0.3, "Mn": 0.7}, DummySpecies("X")],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]],
                  labels=[f"{PAYLOAD}{i}" for i in range(4)], site_properties={"note": [PAYLOAD] * 4})
    s.properties["title"] = PAYLOAD
    return s


@pytest.mark.parametrize("labels", [False, True])
def test_structure_viewer_embeds_no_text_from_the_file(labels):
    s = _crafted_structure()
    assert s[0].label.startswith(PAYLOAD)  # pymatgen keeps a file's labels: the viewer must not use them
    html = structure_html(s, labels=labels)
    assert "<img" not in html and "onerror" not in html and "<!--" not in html
    assert html.count("</script>") == 2 and html.rstrip().endswith("</script>")  # the src tag and our own
    xyz = _embedded(html)["xyz"].splitlines()
    assert int(xyz[0]) == len(s) and len(xyz) == len(s) + 2
    assert [line.split()[0] for line in xyz[2:]] == ["Na", "Cl", "Mn", UNKNOWN_SYMBOL]
    lattice = [float(v) for v in xyz[1].split('"')[1].split()]  # addUnitCell draws the cell from it
    np.testing.assert_allclose(lattice, s.lattice.matrix.ravel(), atol=1e-6)
    if labels:
        assert [lab["text"] for lab in _embedded(html)["labels"]] == ["Na", "Cl", "Mn", UNKNOWN_SYMBOL]


def test_script_json_leaves_nothing_for_the_html_parser():
    text = script_json({"a": PAYLOAD, "b": "-->\u2028&"})
    assert not set(text) & set("<>&\u2028")
    assert json.loads(text) == {"a": PAYLOAD, "b": "-->\u2028&"}


def test_local_3dmol_file_is_shipped():
    from pathlib import Path

    js = Path(__file__).resolve().parent.parent / "static" / "3Dmol-min.js"
    assert js.stat().st_size > 100_000


def test_curve_figure_colours_by_value():
    x = np.linspace(0, 1, 20)
    fig = curve_figure(
        [Curve(x, 4 - x, "a", 0.8), Curve(x, 4 - 1.2 * x, "b", 1.0, dash=True)], "capacity", "voltage"
    )
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 2 and lines[0].line.color != lines[1].line.color
    assert lines[1].line.dash == "dash"
    assert fig.data[-1].marker.showscale  # colour bar
    with pytest.raises(ValueError):
        curve_figure([], "x", "y")


def test_curve_names_from_files_are_escaped_for_plotly():
    # plotly draws trace names as its own HTML subset (links, bold, styled spans); cell ids come from files.
    x = np.linspace(0, 1, 5)
    name = '<a href="http://x.test">cell</a> %{x}'
    fig = curve_figure([Curve(x, x, name, 0.9)], "x", "y")
    assert fig.data[0].name == '&lt;a href="http://x.test"&gt;cell&lt;/a&gt; %{x}'
    assert "cell" not in fig.data[0].hovertemplate


def test_image_compare_links_zoom_and_scales_sr():
    lo, hi = np.zeros((16, 16)), np.ones((64, 64))
    fig = compare_figure(lo, hi)
    assert fig.data[0].dx == 4 and fig.data[1].dx == 1  # low-res shown in high-res pixel units
    assert fig.layout.xaxis2.matches == "x"
    assert tuple(fig.layout.yaxis.range) == (64, 0) and tuple(fig.layout.xaxis.range) == (0, 64)
    assert display_stride((4096, 4096)) == 4
    with pytest.raises(ValueError, match="2D"):
        compare_figure(np.zeros((2, 8, 8)), hi)


def test_download_bundle_carries_provenance():
    prov = Provenance.now(model="m", sha256="abc", settings={"n": 1}, seed=3)
    blob = bundle({"a.cif": b"data_x"}, prov)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert sorted(zf.namelist()) == ["a.cif", "provenance.json"]
        assert json.loads(zf.read("provenance.json"))["sha256"] == "abc"
    with pytest.raises(ValueError):
        bundle({}, prov)
    with pytest.raises(ValueError, match="reserved"):
        bundle({"provenance.json": b"x"}, prov)
