"""Downloads that never lose where a result came from: the file plus ``provenance.json``."""

from __future__ import annotations

import io
import zipfile

from battgai.core.provenance import Provenance


def bundle(files: dict[str, bytes], provenance: Provenance) -> bytes:
    """Zip ``files`` together with ``provenance.json`` (model, sha256, settings, seed, time)."""
    if not files:
        raise ValueError("nothing to download: no files given")
    if "provenance.json" in files:
        raise ValueError("'provenance.json' is reserved for the provenance record")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("provenance.json", provenance.to_json())
    return buf.getvalue()


def download_bundle(label: str, files: dict[str, bytes], provenance: Provenance, file_name: str,
                    key: str | None = None) -> None:
    """A download button for a zip of ``files`` + provenance."""
    import streamlit as st

    st.download_button(label, data=bundle(files, provenance), file_name=file_name,
                       mime="application/zip", key=key)
