"""3D crystal viewer: the bundled 3Dmol.js (no CDN), fed only numbers and element symbols.

Nothing of a CIF's text reaches the page. py3Dmol's HTML builder pasted
``structure.to(fmt="cif")`` into a ``<script>`` through ``json.dumps``, which
leaves ``</script>`` intact, and pymatgen keeps a file's atom labels and writes
them back: a label ``</script><img onerror=...>`` ran in the viewer's iframe,
which is same-origin with the app. So the viewer writes its own model, an
extended XYZ (element symbol, cartesian coordinates, lattice vectors) built from
parsed values, with every symbol checked against the periodic table, and embeds
all of it as JSON with ``<``, ``>`` and ``&`` escaped, so that no embedded
string can close the script or open a comment whatever it holds.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: Served by Streamlit static serving from static/; absolute because the viewer runs in an iframe.
LOCAL_3DMOL_JS = "/app/static/3Dmol-min.js"
STYLES = ("ball and stick", "stick", "sphere", "line")
_STYLE_SPECS = {
    "ball and stick": {"stick": {"radius": 0.12}, "sphere": {"scale": 0.3}},
    "stick": {"stick": {"radius": 0.15}},
    "sphere": {"sphere": {"scale": 0.6}},
    "line": {"line": {}},
}
#: Symbol drawn for a site that holds no real element (a dummy species): 3Dmol's default colour.
UNKNOWN_SYMBOL = "X"
_SIZE = re.compile(r"\d{1,5}(px|%)")


def script_json(value: object) -> str:
    """``value`` as a JavaScript literal that is safe inside an HTML ``<script>`` element.

    JSON is valid JavaScript; escaping ``<``, ``>`` and ``&`` as ``\\u003c`` ... keeps
    every string's meaning and leaves no ``</script>``, ``<!--`` or ``-->`` for the
    HTML parser to act on. U+2028 / U+2029 are escaped because older JavaScript
    parsers end a string literal at them.
    """
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def site_symbol(site) -> str:
    """Element symbol of ``site`` (its majority element when disordered), or ``UNKNOWN_SYMBOL``.

    The symbol comes from pymatgen's periodic table, never from the file's label.
    """
    from pymatgen.core import Element

    species = max(site.species.items(), key=lambda kv: kv[1])[0]
    symbol = str(getattr(species, "symbol", ""))
    ok = re.fullmatch(r"[A-Z][a-z]?", symbol) is not None and Element.is_valid_symbol(symbol)
    return symbol if ok else UNKNOWN_SYMBOL


def _number(x: float) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot draw a structure with a non-finite coordinate ({x})")
    return f"{x:.6f}"


def extended_xyz(structure: Structure) -> str:
    """The structure as extended XYZ: lattice vectors in the comment line, one ``symbol x y z`` line per site.

    3Dmol.js reads ``Lattice="..."`` into the model's cell, so ``addUnitCell`` draws it.
    """
    lattice = " ".join(_number(v) for v in structure.lattice.matrix.ravel())
    lines = [str(len(structure)), f'Lattice="{lattice}" Properties=species:S:1:pos:R:3']
    for site in structure:
        lines.append(" ".join([site_symbol(site), *(_number(c) for c in site.coords)]))
    return "\n".join(lines) + "\n"


def _size(value: int | str) -> str:
    text = f"{value}px" if isinstance(value, int) else str(value)
    if not _SIZE.fullmatch(text):
        raise ValueError(f"width and height must be pixels (an int) or 'N%' / 'Npx', got {value!r}")
    return text


_TEMPLATE = """<div id="viewer" style="position: relative; width: {width}; height: {height};"></div>
<script src="{js}"></script>
<script>
const spec = {spec};
const viewer = $3Dmol.createViewer(document.getElementById("viewer"), {{backgroundColor: "white"}});
const model = viewer.addModel(spec.xyz, "xyz");
viewer.setStyle({{}}, spec.style);
viewer.addUnitCell(model);
for (const label of spec.labels) {{
  viewer.addLabel(label.text, {{position: {{x: label.x, y: label.y, z: label.z}}, fontSize: 11,
                               showBackground: false, fontColor: "black"}});
}}
viewer.zoomTo();
viewer.render();
</script>
"""


def structure_html(
    structure: Structure,
    supercell: tuple[int, int, int] = (1, 1, 1),
    style: str = "ball and stick",
    labels: bool = False,
    width: int | str = "100%",
    height: int = 420,
) -> str:
    """Standalone HTML of an interactive 3D view of ``structure`` with its unit cell.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Drawn from its species, cartesian coordinates and lattice only (see the module docstring).
    supercell : tuple of int
        Repeats along a, b, c, each 1..4.
    style : str
        One of :data:`STYLES`.
    labels : bool
        Write each atom's element symbol next to it.
    width, height : int or str
        Pixels (int) or ``"N%"`` / ``"Npx"``.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if any(int(n) < 1 or int(n) > 4 for n in supercell):
        raise ValueError(f"supercell multiples must be 1..4, got {supercell}")
    s = structure.copy()
    if tuple(supercell) != (1, 1, 1):
        s.make_supercell(list(supercell))
    spec = {
        "xyz": extended_xyz(s),
        "style": {k: {**v, "colorscheme": "Jmol"} for k, v in _STYLE_SPECS[style].items()},
        "labels": [{"text": site_symbol(site), **dict(zip("xyz", map(float, site.coords), strict=True))}
                   for site in s] if labels else [],
    }
    return _TEMPLATE.format(width=_size(width), height=_size(height), js=LOCAL_3DMOL_JS, spec=script_json(spec))


def show_structure(structure: Structure, height: int = 440, **kwargs) -> None:
    """Render ``structure`` in the page (see :func:`structure_html` for options)."""
    import streamlit as st

    st.iframe(structure_html(structure, height=height - 20, **kwargs), height=height)
