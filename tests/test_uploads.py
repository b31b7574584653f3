"""The upload validator: type sniffing, limits before decoding, shape / dtype / schema checks."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from battgai.demo import licoo2
from battgai.uploads import UploadError, read_cif, read_csv, read_image, sniff


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack")
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_sniff_ignores_extension_and_names_types():
    assert sniff(_tiff(np.zeros((8, 8), np.uint8))) == "tiff"
    assert sniff(_png(np.zeros((8, 8), np.uint8))) == "png"
    assert sniff(b"a,b\n1,2\n") == "csv"
    assert sniff(licoo2().to(fmt="cif").encode()) == "cif"
    assert sniff(b"PK\x03\x04rest") == "zip"
    assert sniff(b"") == "empty"
    assert sniff(bytes(range(256))) == "binary"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_2d_keeps_dtype(dtype):
    arr = (np.random.default_rng(0).random((32, 48)) * 200).astype(dtype)
    out = read_image(_tiff(arr))
    assert out.dtype == dtype and out.shape == (32, 48)
    np.testing.assert_array_equal(out, arr)


def test_multipage_tiff_is_a_stack():
    arr = np.random.default_rng(1).integers(0, 255, (5, 16, 16), dtype=np.uint8)
    assert read_image(_tiff(arr)).shape == (5, 16, 16)


def test_rgb_and_rgba_png_become_grey():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 200
    out = read_image(_png(rgb))
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[0, 0] == round(0.7152 * 200)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 255, np.uint8)], axis=-1)
    assert read_image(_png(rgba)).shape == (16, 16)


def test_png_bomb_refused_from_header():
    with pytest.raises(UploadError, match="limit is"):
        read_image(_png_header_only(100_000, 100_000))


def test_tiff_too_many_voxels_refused():
    with pytest.raises(UploadError, match="pixels"):
        read_image(_tiff(np.zeros((4, 64, 64), np.uint8)), max_pixels=4 * 64 * 63)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"II*\x00" + b"\x00" * 40, "corrupt"),
        (b"hello world", "not an image"),
        (b"", "empty"),
    ],
)
def test_bad_files_get_clear_messages(payload, match):
    with pytest.raises(UploadError, match=match):
        read_image(payload)


def test_nan_tiny_4d_and_dtype_refused():
    nan = np.ones((16, 16), np.float32)
    nan[3, 3] = np.nan
    with pytest.raises(UploadError, match="NaN"):
        read_image(_tiff(nan))
    with pytest.raises(UploadError, match="at least"):
        read_image(_tiff(np.zeros((1, 1), np.uint8)))
    with pytest.raises(UploadError, match="4 dimensions"):
        read_image(_tiff(np.zeros((2, 3, 16, 16), np.uint8)))
    with pytest.raises(UploadError, match="not supported"):
        read_image(_tiff(np.zeros((16, 16), np.complex64)))


def test_csv_schema_names_missing_and_bad_columns():
    df = read_csv(b"time_s,voltage_v\n0,4.1\n10,4.0\n", required=["time_s", "voltage_v"], numeric=["voltage_v"])
    assert list(df.columns) == ["time_s", "voltage_v"] and df["voltage_v"].dtype.kind == "f"
    with pytest.raises(UploadError, match="Missing column\\(s\\): current_a"):
        read_csv(b"time_s,voltage_v\n0,4.1\n", required=["time_s", "current_a"])
    with pytest.raises(UploadError, match="'voltage_v' must be numeric; row 3"):
        read_csv(b"time_s,voltage_v\n0,4.1\n10,abc\n", numeric=["voltage_v"])
    with pytest.raises(UploadError, match="not a CSV"):
        read_csv(_png(np.zeros((8, 8), np.uint8)))
    with pytest.raises(UploadError, match="no rows"):
        read_csv(b"a,b\n")


def test_cif_roundtrip_and_refusals():
    s = read_cif(licoo2().to(fmt="cif").encode())
    assert s.composition.reduced_formula == "LiCoO2"
    with pytest.raises(UploadError, match="not a CIF"):
        read_cif(b"a,b\n1,2\n")
    with pytest.raises(UploadError, match="could not be read"):
        read_cif(b"data_broken\n_cell_length_a 3.0\n")
