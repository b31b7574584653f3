"""The upload validator: type sniffing, limits before decoding, shape / dtype / schema checks."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from battgai.core.demo import licoo2
from battgai.uploads import MAX_CIF_ATOMS, MAX_CIF_POSITIONS, cifscan, read_cif, read_csv, read_image, sniff
from battgai.uploads.cifscan import MAX_SYMOPS
from battgai.uploads.errors import UploadError, quoted


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
    with pytest.raises(UploadError, match="no _cell_length_b"):
        read_cif(b"data_broken\n_cell_length_a 3.0\n")


# --- bad files answered in the researcher's words ---------------------------------------------------------------

PYTHON_WORDS = ("argument", "index out of range", "NoneType", "object has no attribute", "Traceback", "KeyError",
                "zip()", "Error", "Exception", "modulo", "len(", "<_io.", "codec", "struct.", "tifffile", "PIL",
                "Invalid CIF file with no structures")

CELL = """data_x
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
"""
ATOMS = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
"""
ROWS = "Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1\n"
GOOD_CIF = CELL + ATOMS + ROWS
BAD_CIFS = {
    "no atom loop": (CELL, "no atom positions"),
    "no cell": ("data_x\n" + ATOMS + ROWS, "no _cell_length_a"),
    "no data block": (CELL.replace("data_x\n", "") + ATOMS + ROWS, "no data block"),
    "short row": (CELL + ATOMS + "Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 1\n",
                  r"fewer values than its 6 column headers \(row 2"),
    "truncated": ((CELL + ATOMS + ROWS)[:-25], "fewer values"),
    "empty loop": (CELL + ATOMS, "no rows"),
    "garbage coordinate": (CELL + ATOMS + "Na1 Na 0 abc 0 1\n", "_atom_site_fract_y = `abc`, not a number"),
    "NaN coordinate": (CELL + ATOMS + "Na1 Na nan 0 0 1\n", "not a number"),
    "garbage cell": (GOOD_CIF.replace("_cell_length_a 4.0", "_cell_length_a four"), "`four`, not a number"),
    "infinite cell": (GOOD_CIF.replace("_cell_length_a 4.0", "_cell_length_a 1e400"), "not a number"),
    "zero cell length": (GOOD_CIF.replace("_cell_length_a 4.0", "_cell_length_a 0"), "must be above 0"),
    "zero volume cell": (GOOD_CIF.replace("_cell_angle_alpha 90", "_cell_angle_alpha 0.0001").replace(
        "_cell_angle_beta 90", "_cell_angle_beta 0.0001"), "no volume"),
    "flat cell": (GOOD_CIF.replace("_cell_angle_gamma 90", "_cell_angle_gamma 180"), "between 0 and 180"),
    "overlapping atoms": (CELL + ATOMS + "Na1 Na 0 0 0 1\nCl1 Cl 0 0 0 1\n", "same spot"),
    "occupancy above 1": (CELL + ATOMS + "Na1 Na 0 0 0 2\n", "occupancy `2`"),
    "all occupancies 0": (CELL + ATOMS + "Na1 Na 0 0 0 0\n", "occupancy 0"),
    "not an element": (CELL + ATOMS + "Qq1 Qq 0 0 0 1\n", "`Qq`.*not an element"),
    "unclosed text field": (CELL + "_publ_section_title\n;\nA title\n" + ATOMS + ROWS, "never closed"),
    "two structures": (GOOD_CIF + GOOD_CIF.replace("data_x", "data_y"), "2 structures"),
    "comma-separated text": ("a,b\n1,2\n", "not a CIF"),
    "binary junk": (bytes(range(256)) * 4, "binary data"),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_CIFS))
def test_bad_cifs_say_what_is_wrong_in_the_researchers_words(name):
    payload, match = BAD_CIFS[name]
    with pytest.raises(UploadError, match=match) as err:
        read_cif(payload.encode() if isinstance(payload, str) else payload)
    assert not [w for w in PYTHON_WORDS if w in str(err.value)], str(err.value)


def test_a_cif_the_parser_refuses_is_answered_in_general_terms(monkeypatch):
    from pymatgen.core import Structure

    def refuse(*args, **kwargs):
        raise ValueError("zip() argument 2 is longer than argument 1")

    monkeypatch.setattr(Structure, "from_str", refuse)
    with pytest.raises(UploadError, match="pymatgen's CIF parser rejected it") as err:
        read_cif(GOOD_CIF.encode())
    assert "zip()" not in str(err.value)


def _p1_cif(n: int) -> bytes:
    rng = np.random.default_rng(0)
    rows = "".join(f"Na{i} Na {x:.5f} {y:.5f} {z:.5f} 1\n" for i, (x, y, z) in enumerate(rng.random((n, 3))))
    return (CELL.replace("4.0", f"{(12.0 * n) ** (1 / 3):.3f}") + ATOMS + rows).encode()


def _fm3m_cif(rows: int) -> bytes:
    rng = np.random.default_rng(1)
    body = "".join(f"O{i} O {x:.5f} {y:.5f} {z:.5f} 1\n" for i, (x, y, z) in enumerate(rng.random((rows, 3))))
    return (CELL.replace("4.0", "20.0").replace("'P 1'", "'F m -3 m'") + ATOMS + body).encode()


@pytest.fixture
def parser_must_not_run(monkeypatch):
    from pymatgen.core import Structure

    def fail(*args, **kwargs):
        raise AssertionError("the CIF reached pymatgen's parser")

    monkeypatch.setattr(Structure, "from_str", fail)


def test_a_50000_atom_cif_is_refused_before_it_is_parsed(parser_must_not_run):
    # A 1.7 MB CIF of 50,000 atoms kept a core busy for more than 8 minutes in pymatgen's parser.
    with pytest.raises(UploadError, match=f"lists 50,000 atoms; the limit is {MAX_CIF_ATOMS} atoms"):
        read_cif(_p1_cif(50_000))


def test_rows_times_symmetry_operations_are_bounded_before_the_parse(parser_must_not_run):
    rows = MAX_CIF_POSITIONS // MAX_SYMOPS + 1  # few rows, but each makes 192 atoms in F m -3 m
    assert rows <= MAX_CIF_ATOMS
    with pytest.raises(UploadError, match=f"{rows} atom rows under its {MAX_SYMOPS} symmetry operations"):
        read_cif(_fm3m_cif(rows))


def test_atoms_after_symmetry_are_bounded():
    with pytest.raises(UploadError, match=f"384 atoms once its symmetry is applied; the limit is {MAX_CIF_ATOMS}"):
        read_cif(_fm3m_cif(2))
    assert len(read_cif(_p1_cif(MAX_CIF_ATOMS))) == MAX_CIF_ATOMS


def test_the_parser_gets_only_the_cell_symmetry_and_atoms():
    # Titles, comments, other blocks and data block names never reach pymatgen's tokenizer (quadratic on a long
    # line of quotes) nor anything downstream; labels keep their place in the atom loop.
    payload = "</script><img src=x onerror=alert(1)>"
    text = (f"data_{payload.replace(' ', '_')}\n_chemical_name_common '{payload}'\n"
            f"_publ_section_title\n;\n{payload}\n;\n# {payload}\n_journal_name_full " + "'a " * 5000 + "\n"
            + CELL.replace("data_x\n", "") + ATOMS + ROWS)
    scan = cifscan.scan(text)
    assert "img" not in scan.text and "'a" not in scan.text and "journal" not in scan.text
    assert scan.text.startswith("data_upload\n")
    s = read_cif(text.encode())
    assert s.composition.reduced_formula == "NaCl"


def test_cif_and_csv_in_windows_1252_are_read():
    latin = GOOD_CIF.replace("data_x\n", "data_x\n_publ_author_name 'M\xfcller'\n").encode("cp1252")
    assert read_cif(latin).composition.reduced_formula == "NaCl"
    df = read_csv("Zeit/s;Strom/\xb5A\n0;1\n1;2\n".encode("cp1252"))
    assert list(df.columns) == ["Zeit/s", "Strom/\xb5A"]


def _bad_images() -> dict[str, tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    tif, png, stack = _tiff(img), _png(img), _tiff(rng.integers(0, 255, (5, 64, 64), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    return {
        "TIFF header only": (b"II*\x00" + b"\x00" * 40, "TIFF file is corrupt"),
        "TIFF cut in half": (tif[: len(tif) // 2], "TIFF file is truncated: its header describes an image of shape"),
        "TIFF stack cut": (stack[: len(stack) * 2 // 3], r"shape \(5, 64, 64\) stored up to byte"),
        "TIFF cut in its directory": (tif[:100], "TIFF file is corrupt"),
        "TIFF first page far away": (tif[:4] + struct.pack("<I", 10**9) + tif[8:], "TIFF file is corrupt"),
        "TIFF random bytes": (b"II*\x00" + bytes(rng.integers(0, 255, 5000, dtype=np.uint8)), "TIFF file is corrupt"),
        "PNG cut in half": (png[: len(png) // 2], "PNG file is truncated"),
        "PNG header only": (png[:33], "PNG file is corrupt"),
        "PNG damaged pixels": (png[:60] + bytes(50) + png[110:], "PNG file's pixel data is corrupt"),
        "JPEG cut": (jpeg[: len(jpeg) // 3], "JPEG file is truncated"),
        "JPEG random bytes": (b"\xff\xd8\xff" + bytes(rng.integers(0, 255, 500, dtype=np.uint8)),
                              "JPEG file('s pixel data)? is corrupt"),
    }


@pytest.mark.parametrize("name", sorted(_bad_images()))
def test_bad_images_say_what_is_wrong_in_the_researchers_words(name):
    payload, match = _bad_images()[name]
    with pytest.raises(UploadError, match=match) as err:
        read_image(payload)
    assert not [w for w in PYTHON_WORDS if w in str(err.value)], str(err.value)


BAD_CSVS = {
    "ragged line": (b"a,b\n1,2\n3,4,5\n", "Line 3 of the CSV has 3 values where the header has 2 columns"),
    "blank lines": (b"\n\n\n", "only blank lines"),
    "unclosed quote": (b'a,b\n"1,2\n3,4\n', "could not be parsed: check that it has one header row"),
    "NUL bytes": (b"a,b\n1,\x002\n", "not a CSV"),
}


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_bad_csvs_say_what_is_wrong_in_the_researchers_words(name):
    payload, match = BAD_CSVS[name]
    with pytest.raises(UploadError, match=match) as err:
        read_csv(payload)
    assert not [w for w in PYTHON_WORDS if w in str(err.value)], str(err.value)


def test_csv_one_column_is_not_split_at_a_letter():
    assert list(read_csv(b"hello\nworld\n").columns) == ["hello"]


def test_file_text_in_messages_is_quoted_as_code():
    # Pages show messages as Markdown: a crafted column name must not become a link or an image there.
    with pytest.raises(UploadError) as err:
        read_csv(b"[x](javascript:alert(1)),![i](http://x/i.png),a`b\n1,2,3\n", required=["time_s"])
    msg = str(err.value)
    assert "`[x](javascript:alert(1))`" in msg and "`![i](http://x/i.png)`" in msg and "`a?b`" in msg
    assert quoted("x" * 100).endswith("...`") and len(quoted("x" * 100)) == 42
    assert quoted("") == "an empty value"


def test_a_csv_head_can_be_read_without_parsing_the_whole_file():
    data = b"cycle;time_s;voltage_v\n" + b"".join(b"%d;%d;3.9\n" % (i // 10, i) for i in range(5000))
    head = read_csv(data, nrows=1000)
    assert list(head.columns) == ["cycle", "time_s", "voltage_v"] and len(head) == 1000
    assert len(read_csv(data)) == 5000
