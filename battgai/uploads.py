"""The one validator every upload passes through.

It sniffs the real file type from the bytes (never the extension), enforces a
size limit and a pixel-count limit before decoding (so a decompression bomb is
refused from its header), checks dtype and shape, and checks CSV schemas with a
message that names the missing or bad column. Every refusal is an
:class:`UploadError` whose message is written for the researcher.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Largest upload accepted, in MB; ``.streamlit/config.toml`` sets ``server.maxUploadSize`` to match.
MAX_UPLOAD_MB = 200
#: Largest image or stack accepted, in pixels / voxels (e.g. 4096 x 4096, or 320^3).
MAX_PIXELS = 2**25
#: Smallest side of an image worth processing.
MIN_SIDE = 8
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64", "bool")


class UploadError(ValueError):
    """An upload that cannot be used; the message says why, for the researcher."""


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
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with Image.open(io.BytesIO(data)) as im:
                _check_pixels(im.width * im.height, (im.height, im.width), max_pixels)
                img = np.asarray(im.convert("I;16") if im.mode == "I;16" else im)
        except UploadError:
            raise
        except Exception as exc:  # PIL raises many types for corrupt files
            raise UploadError(f"The {kind.upper()} file could not be decoded: {exc}") from exc
    else:
        raise UploadError(
            f"This is not an image the tool can read (looks like {kind}); upload a TIFF or PNG."
        )
    return check_image(img)


def _read_tiff(data: bytes, max_pixels: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            _check_pixels(int(np.prod(series.shape)), series.shape, max_pixels)
            return series.asarray()
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError(f"The TIFF file is corrupt or truncated: {exc}") from exc


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
) -> pd.DataFrame:
    """Parse an uploaded CSV and check its schema.

    Parameters
    ----------
    required : iterable of str
        Columns that must be present; the error names every one that is missing.
    numeric : iterable of str
        Columns that must parse as numbers; the error names the column and first bad row.
    """
    check_size(data, max_mb)
    kind = sniff(data)
    if kind not in ("csv", "text"):
        raise UploadError(f"This is not a CSV file (looks like {kind}).")
    try:
        df = pd.read_csv(io.BytesIO(data), sep=None, engine="python", encoding="utf-8-sig")
    except Exception as exc:
        raise UploadError(f"The CSV could not be parsed: {exc}") from exc
    if df.empty:
        raise UploadError("The CSV has a header but no rows.")
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UploadError(
            f"Missing column(s): {', '.join(missing)}. Found: {', '.join(map(str, df.columns))}."
        )
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UploadError(
                f"Column {col!r} must be numeric; row {row + 2} holds {df[col].iloc[row]!r}."
            )
        df[col] = values
    return df


def read_cif(data: bytes, max_mb: float = 5):
    """Parse an uploaded CIF into a ``pymatgen.core.Structure``."""
    check_size(data, max_mb)
    kind = sniff(data)
    if kind != "cif":
        raise UploadError(f"This is not a CIF file (looks like {kind}).")
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(data.decode("utf-8"), fmt="cif")
    except Exception as exc:
        raise UploadError(f"The CIF could not be read as a crystal structure: {exc}") from exc
