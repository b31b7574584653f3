"""The one validator every upload passes through.

It sniffs the real file type from the bytes (never the extension), enforces a
size limit and a pixel-count limit before decoding (so a decompression bomb is
refused from its header), checks dtype and shape, and checks CSV schemas with a
message that names the missing or bad column. Every refusal is an
:class:`UploadError` whose message says what is wrong with the file in the
researcher's terms, never in the words of the library that tripped over it
("list index out of range"); text from the file that a message quotes goes
through :func:`quoted`, because pages show messages as Markdown.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable

import numpy as np
import pandas as pd

from battgai.uploads.errors import UploadError, quoted

#: Largest upload accepted, in MB; ``.streamlit/config.toml`` sets ``server.maxUploadSize`` to match.
MAX_UPLOAD_MB = 200
#: Largest image or stack accepted, in pixels / voxels (e.g. 4096 x 4096, or 320^3).
MAX_PIXELS = 2**25
#: Smallest side of an image worth processing.
MIN_SIDE = 8
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64", "bool")
#: Largest CIF accepted, in MB (a 200-atom CIF is ~20 kB; the rest would be comments and text fields).
MAX_CIF_MB = 5
#: Most atoms in an uploaded crystal, after its symmetry is applied. The generator's crystals have at most 20
#: (MP-20); the checks scale badly (StructureMatcher against every known polymorph of the formula, neighbour
#: distances): a random 200-atom SiO2 (23 MP-20 polymorphs, the most of any formula) is read, checked and
#: matched to its nearest known structure in 14 s on one core, 300 atoms in 38 s, 500 in 112 s.
MAX_CIF_ATOMS = 200
#: Most atom positions the CIF parser may generate (atom rows x symmetry operations) before merging those that
#: coincide; checked before parsing. pymatgen's parse grows with the square of it: 5,760 positions take 4 s,
#: 11,520 took 13 s, 50,000 atoms minutes. A real crystal of MAX_CIF_ATOMS atoms stays far below it: a row on a
#: line or plane has a site symmetry of order 8 at most, one on a fixed point (order up to 48) cannot repeat, so
#: about 8 x 200 + 10 x 48; the 92 real CIFs shipped with pymatgen's neighbours (COD, CSD) need 1,152 at most.
MAX_CIF_POSITIONS = 5_000


def decode_text(data: bytes) -> str | None:
    """The file as text: UTF-8 (with or without a byte-order mark), else Windows-1252 (Excel's and many
    older programs' export: a CIF with an author named Müller, a CSV headed Strom/µA). None for binary data
    (NUL bytes or control characters)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return None if any(ord(ch) < 32 and ch not in "\t\r\n\f" for ch in text[:65536]) else text


def sniff(data: bytes) -> str:
    """Real type of a file from its first bytes.

    Returns one of ``tiff, png, jpeg, gif, bmp, zip, gzip, pdf, cif, csv, text, binary, empty``.
    """
    if not data:
        return "empty"
    head = data[:16]
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"%PDF":
        return "pdf"
    try:
        text = data[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    if "\x00" in text:
        return "binary"
    lowered = text.lower()
    if "_cell_length_a" in lowered or lowered.lstrip().startswith("data_"):
        return "cif"
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    if first.count(",") >= 1 or first.count(";") >= 1 or first.count("\t") >= 1:
        return "csv"
    return "text"


def check_size(data: bytes, max_mb: float = MAX_UPLOAD_MB) -> None:
    if len(data) == 0:
        raise UploadError("The file is empty.")
    if len(data) > max_mb * 1e6:
        raise UploadError(f"The file is {len(data) / 1e6:.0f} MB; the limit is {max_mb} MB.")


def _png_shape(data: bytes) -> tuple[int, int]:
    # IHDR is always the first chunk: width and height sit at bytes 16..24.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UploadError("The PNG file is corrupt (no IHDR header).")
    w, h = struct.unpack(">II", data[16:24])
    return h, w


def _check_pixels(n: int, shape: Iterable[int], max_pixels: int) -> None:
    if n > max_pixels:
        raise UploadError(
            f"The image has {n:,} pixels (shape {tuple(shape)}); the limit is {max_pixels:,} "
            "pixels/voxels. Crop or downsample it first."
        )


def read_image(data: bytes, max_pixels: int = MAX_PIXELS, max_mb: float = MAX_UPLOAD_MB) -> np.ndarray:
    """Decode an uploaded image or stack into a 2D ``(H, W)`` or 3D ``(Z, H, W)`` grey array.

    TIFF (single or multi-page, 8 / 16-bit, float) and PNG / JPEG are accepted.
    RGB is converted to grey (luminance), an alpha channel is dropped.

    Parameters
    ----------
    data : bytes
        The uploaded file content.
    max_pixels : int
        Refuse anything with more pixels / voxels, checked from the header before decoding.

    Returns
    -------
    image : ndarray
        2D or 3D array in its original dtype (float arrays keep their range).

    Raises
    ------
    UploadError
        Not an image, corrupt, too large, wrong dimensionality, unsupported dtype,
        NaN / inf values, or a side shorter than ``MIN_SIDE`` pixels.
    """
    check_size(data, max_mb)
    kind = sniff(data)
    if kind == "tiff":
        img = _read_tiff(data, max_pixels)
    elif kind in ("png", "jpeg", "gif", "bmp"):
        if kind == "png":
            h, w = _png_shape(data)
            _check_pixels(h * w, (h, w), max_pixels)
        img = _read_pil(data, kind.upper(), max_pixels)
    else:
        raise UploadError(
            f"This is not an image the tool can read (looks like {kind}); upload a TIFF or PNG."
        )
    return check_image(img)


def _read_pil(data: bytes, kind: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_pixels(im.width * im.height, (im.height, im.width), max_pixels)
            return np.asarray(im.convert("I;16") if im.mode == "I;16" else im)
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:
        raise UploadError(f"The {kind} image has more pixels than the limit of {max_pixels:,}; crop or downsample "
                          "it first.") from exc
    except UnidentifiedImageError as exc:
        raise UploadError(f"The {kind} file is corrupt: its header cannot be read.") from exc
    # PIL raises OSError, ValueError, SyntaxError, zlib errors ... for damaged data; their words are PIL's.
    except Exception as exc:
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise UploadError(f"The {kind} file is truncated: it ends before all of its pixels ({len(data):,} "
                              "bytes). Upload the whole file again.") from exc
        raise UploadError(f"The {kind} file's pixel data is corrupt: it cannot be decoded. Re-export the image "
                          "and upload it again.") from exc


def _read_tiff(data: bytes, max_pixels: int) -> np.ndarray:
    import tifffile

    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception as exc:  # tifffile's words (TiffFileError, struct.error, IndexError ...) say nothing to a user
        raise UploadError("The TIFF file is corrupt: its header (the directory of pages) cannot be read.") from exc
    with tif:
        try:
            series = tif.series[0]
            shape = series.shape
        except Exception as exc:
            raise UploadError("The TIFF file is corrupt: it describes no image the tool can read (no page with "
                              "pixel data).") from exc
        _check_pixels(int(np.prod(shape)), shape, max_pixels)
        _check_tiff_complete(series, len(data))
        try:
            return series.asarray()
        except Exception as exc:
            raise UploadError("The TIFF file's pixel data is corrupt or compressed in a way the tool cannot read; "
                              "save it uncompressed (or LZW / deflate) and upload it again.") from exc


def _check_tiff_complete(series, size: int) -> None:
    # tifffile reads a truncated file's missing strips as errors deep in its decoders (or as zeros); the page
    # directory (or, for a contiguous stack, the series' offset and size) says where the pixels lie, so a short
    # file can be named before decoding.
    pages = [p for p in series.pages if p is not None]
    need = max((o + c for p in pages for o, c in zip(p.dataoffsets, p.databytecounts, strict=False)), default=0)
    if getattr(series, "dataoffset", None) is not None:
        need = max(need, series.dataoffset + series.nbytes)
    if need > size:
        raise UploadError(f"The TIFF file is truncated: its header describes an image of shape {tuple(series.shape)} "
                          f"stored up to byte {need:,}, but the file ends at byte {size:,}. Upload the whole file "
                          "again.")


def check_image(img: np.ndarray) -> np.ndarray:
    """Check dtype, shape and values of a decoded image; return it as 2D or 3D grey."""
    img = np.asarray(img)
    if img.dtype.name not in SUPPORTED_DTYPES:
        raise UploadError(
            f"Pixel type {img.dtype} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}."
        )
    # Trailing axis of 3 or 4 on an image is colour (RGB / RGBA): drop alpha, take luminance.
    if img.ndim in (3, 4) and img.shape[-1] in (3, 4) and min(img.shape[:-1]) > 4:
        rgb = img[..., :3].astype(np.float64)
        grey = rgb @ np.array([0.2126, 0.7152, 0.0722])
        img = grey.astype(np.float32) if img.dtype.kind == "f" else grey.round().astype(img.dtype)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim not in (2, 3):
        raise UploadError(
            f"Expected a 2D image or a 3D stack, got {img.ndim} dimensions {img.shape}; "
            "split 4D (time / channel) data into stacks first."
        )
    if min(img.shape[-2:]) < MIN_SIDE:
        raise UploadError(f"The image is {img.shape}; each side must be at least {MIN_SIDE} pixels.")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        raise UploadError("The image contains NaN or infinite values; fill or mask them first.")
    if img.dtype == bool:
        img = img.astype(np.uint8)
    return img


def read_csv(
    data: bytes,
    required: Iterable[str] = (),
    numeric: Iterable[str] = (),
    max_mb: float = MAX_UPLOAD_MB,
    nrows: int | None = None,
) -> pd.DataFrame:
    """Parse an uploaded CSV and check its schema.

    Parameters
    ----------
    required : iterable of str
        Columns that must be present; the error names every one that is missing.
    numeric : iterable of str
        Columns that must parse as numbers; the error names the column and first bad row.
    nrows : int, optional
        Parse only the first rows (to show the columns of a large file without reading it all).
    """
    check_size(data, max_mb)
    kind = sniff(data)
    text = decode_text(data) if kind in ("csv", "text", "binary") else None
    if text is None:
        raise UploadError(f"This is not a CSV file (looks like {kind}).")
    df = _parse_csv(text, nrows)
    if df.empty:
        raise UploadError("The CSV has a header but no rows.")
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        shown = ", ".join(quoted(c) for c in df.columns[:20]) + (", ..." if len(df.columns) > 20 else "")
        raise UploadError(f"Missing column(s): {', '.join(missing)}. Found: {shown}.")
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UploadError(f"Column {col!r} must be numeric; row {row + 2} holds {quoted(df[col].iloc[row])}.")
        df[col] = values
    return df


def _separator(text: str) -> str:
    # From the header line, as pandas' own sniffing (sep=None) does, but among real separators only: pandas tries
    # every character and split a one-column CSV headed "hello" at the letter l.
    import csv

    header = next(line for line in text.splitlines() if line.strip())
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","  # one column, or ragged lines that the parse names below


def _parse_csv(text: str, nrows: int | None = None) -> pd.DataFrame:
    import re

    if not text.strip():
        raise UploadError("The CSV holds only blank lines.")
    try:
        # The C parser: ten times faster than the python one, which took ~45 s on a 200 MB cycler export.
        return pd.read_csv(io.StringIO(text), sep=_separator(text), engine="c", low_memory=False,
                           nrows=nrows)
    except pd.errors.EmptyDataError as exc:
        raise UploadError("The CSV has no header row: it holds only blank lines.") from exc
    except Exception as exc:  # pandas' words ("Error tokenizing data", "Could not determine delimiter") are its own
        if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc)):
            want, line, got = m.groups()
            raise UploadError(f"Line {line} of the CSV has {got} values where the header has {want} columns; "
                              "every line needs one value per column.") from exc
        raise UploadError("The CSV could not be parsed: check that it has one header row and the same number of "
                          "values on every line.") from exc


def read_cif(data: bytes, max_mb: float = MAX_CIF_MB, max_atoms: int = MAX_CIF_ATOMS):
    """Parse an uploaded CIF into a ``pymatgen.core.Structure`` of at most ``max_atoms`` atoms.

    The text is scanned first (:func:`battgai.uploads.cifscan.scan`): a file whose atom rows,
    or atom rows times symmetry operations (:data:`MAX_CIF_POSITIONS`), can only
    make too big a crystal is refused before pymatgen parses it, and the common
    defects are named in the researcher's terms.

    Raises
    ------
    UploadError
        Not a CIF, too big, a defect the scan names, one pymatgen's parser refuses
        (said in general terms: its own words are Python's), a crystal of more than
        ``max_atoms`` atoms or with a species that is no element.
    """
    check_size(data, max_mb)
    kind = sniff(data)
    text = decode_text(data) if kind in ("cif", "text", "binary") else None
    if text is None or not ("_cell_length_a" in text.lower() or text.lstrip().lower().startswith("data_")):
        what = "binary data, not text" if text is None and kind == "binary" else f"it looks like {kind}"
        raise UploadError(f"This is not a CIF file ({what}): a CIF has a data_ block with _cell_length_a ... "
                          "and an _atom_site loop.")
    from battgai.uploads import cifscan

    found = cifscan.scan(text)
    if found.atom_rows > max_atoms:
        raise UploadError(f"The CIF lists {found.atom_rows:,} atoms; the limit is {max_atoms} atoms per crystal.")
    if found.positions > MAX_CIF_POSITIONS:
        raise UploadError(f"The CIF's {found.atom_rows} atom rows under its {found.symops} symmetry operations make "
                          f"up to {found.positions:,} atom positions; the limit is {MAX_CIF_POSITIONS:,} (and "
                          f"{max_atoms} atoms per crystal).")
    found.check_overlaps()
    structure = _parse_cif(found.text)
    if len(structure) > max_atoms:
        raise UploadError(f"The crystal has {len(structure):,} atoms once its symmetry is applied; the limit is "
                          f"{max_atoms} atoms per crystal.")
    if not (np.isfinite(structure.lattice.matrix).all() and np.isfinite(structure.frac_coords).all()):
        raise UploadError("The CIF's cell or coordinates are too large to be numbers (infinite).")
    from pymatgen.core import DummySpecies

    if dummies := sorted({sp.symbol for sp in structure.composition if isinstance(sp, DummySpecies)}):
        raise UploadError(f"The CIF names {', '.join(quoted(d) for d in dummies)} as an atom's element, and it is "
                          "not an element of the periodic table: check _atom_site_type_symbol (or the labels).")
    return structure


def _parse_cif(text: str):
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt="cif")
    except Exception as exc:  # pymatgen's own words are Python's ("integer modulo by zero", "zip() argument ...")
        raise UploadError(
            "The CIF could not be read as a crystal structure; pymatgen's CIF parser rejected it. Check that it "
            "has a cell (_cell_length_a, _b, _c, _cell_angle_alpha, _beta, _gamma), a space group "
            "(_symmetry_space_group_name_H-M or _symmetry_equiv_pos_as_xyz) and an _atom_site loop with "
            "_atom_site_type_symbol and fractional coordinates."
        ) from exc
