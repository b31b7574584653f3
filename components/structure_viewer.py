"""3D crystal viewer: py3Dmol with the bundled 3Dmol.js (no CDN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: Served by Streamlit static serving from static/; absolute because the viewer runs in an iframe.
LOCAL_3DMOL_JS = "/app/static/3Dmol-min.js"
STYLES = ("ball and stick", "stick", "sphere", "line")


def structure_html(
    structure: Structure,
    supercell: tuple[int, int, int] = (1, 1, 1),
    style: str = "ball and stick",
    labels: bool = False,
    width: int | str = "100%",
    height: int = 420,
) -> str:
    """Standalone HTML of an interactive 3D view of ``structure`` with its unit cell."""
    import py3Dmol

    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if any(int(n) < 1 or int(n) > 4 for n in supercell):
        raise ValueError(f"supercell multiples must be 1..4, got {supercell}")
    s = structure.copy()
    if tuple(supercell) != (1, 1, 1):
        s.make_supercell(list(supercell))
    view = py3Dmol.view(width=width, height=height, js=LOCAL_3DMOL_JS)
    view.addModel(s.to(fmt="cif"), "cif")
    spec = {
        "ball and stick": {"stick": {"radius": 0.12}, "sphere": {"scale": 0.3}},
        "stick": {"stick": {"radius": 0.15}},
        "sphere": {"sphere": {"scale": 0.6}},
        "line": {"line": {}},
    }[style]
    view.setStyle({}, {k: {**v, "colorscheme": "Jmol"} for k, v in spec.items()})
    view.addUnitCell()
    if labels:
        for site in s:
            x, y, z = site.coords
            view.addLabel(
                site.specie.symbol,
                {"position": {"x": x, "y": y, "z": z}, "fontSize": 11, "showBackground": False,
                 "fontColor": "black"},
            )
    view.setBackgroundColor("white")
    view.zoomTo()
    return view._make_html()


def show_structure(structure: Structure, height: int = 440, **kwargs) -> None:
    """Render ``structure`` in the page (see :func:`structure_html` for options)."""
    import streamlit as st

    st.iframe(structure_html(structure, height=height - 20, **kwargs), height=height)
