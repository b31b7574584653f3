"""A cheap scan of a CIF's text before pymatgen parses it: sizes and problems, in the researcher's words.

pymatgen's CIF parser is slow on big files (it merges every generated position
against all the others: 4,000 atoms take 3 s, 50,000 took minutes) and answers a
bad file in Python's words ("zip() argument 2 is longer than argument 1",
"integer modulo by zero", "Invalid CIF file with no structures!"). This module
reads the same text in one linear pass (CIF 1.1 tokens: tags, ``loop_``, quoted
strings, ``;`` text fields, comments), counts the atom rows and symmetry
operations, so the upload can be refused before the parse when it can only be
too big, and finds the common defects (no cell, no atom loop, short rows,
values that are not numbers, atoms on one spot) so the message can name them.
It does not replace the parser: a file it passes may still be refused there.

The parser gets a CIF rebuilt from the scan (:attr:`Scan.text`), not the file:
the one structure block's cell, symmetry and atom loops, each value re-quoted,
one loop row per line. Its tokenizer is quadratic on a long line of quotes
(``'a 'a 'a ...``: a 5 MB line of them ran for more than 15 minutes) and it
parses every block of a file; none of that, nor any title or comment, reaches it.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re

from battgai.uploads.errors import UploadError, quoted

#: The most symmetry operations a space group has (Fm-3m and the other F-centred cubic groups, conventional cell):
#: what the parser may apply to each atom row when the file lists no operations of its own.
MAX_SYMOPS = 192
CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
             "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
COORD_TAGS = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz",
               "_space_group_symop_magn_operation_xyz")
_CENTERING_TAG = "_space_group_symop_magn_centering_xyz"
_GROUP_SYMBOL_TAGS = ("_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt")
_GROUP_NUMBER_TAGS = ("_symmetry_int_tables_number", "_space_group_it_number")
_SYMOP = re.compile(r"[xyz0-9+\-*/. ]+(,[xyz0-9+\-*/. ]+){2}(,\s*[+-]1)?", re.IGNORECASE)
_SPACE, _NONSPACE = re.compile(r"\s"), re.compile(r"\S")
_RESERVED = ("data_", "loop_", "save_", "global_", "stop_")
_PLAIN = re.compile(r"[^\s'\"_#$;\[\]]\S*")
#: Items and loops the parser reads (tags as normalised by :func:`_norm`); the rebuilt CIF holds only these.
_PARSED = ("_cell_", "_symmetry_", "_space_group", "_magnetic_space_group", "_chemical_formula_", "_atom_type_",
           "_atom_site_moment")
_NUMBER = re.compile(r"([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)(\(\d+\))?")


@dataclasses.dataclass
class Loop:
    tags: list[str]  # normalised (see _norm)
    raw_tags: list[str]  # as written, for the parser (it tells _symmetry_space_group_name_H-M by its case)
    values: list[tuple[str, int]]  # (value, line number)
    line: int


@dataclasses.dataclass
class Block:
    name: str
    line: int
    items: dict[str, tuple[str, int, str]] = dataclasses.field(default_factory=dict)  # tag: (value, line, raw tag)
    loops: list[Loop] = dataclasses.field(default_factory=list)

    def loop_with(self, tags) -> Loop | None:
        return next((lp for lp in self.loops if any(t in lp.tags for t in tags)), None)


@dataclasses.dataclass
class Scan:
    """What the scan found in the one structure block of a CIF."""

    block: str
    text: str  # what the parser gets: the block rebuilt from the scan (see the module docstring)
    cell: list[float]  # a, b, c (A), alpha, beta, gamma (degrees)
    atoms: list[tuple[int, list[float], float]]  # (row number, fractional x y z, occupancy) of rows with atoms
    symops: int  # symmetry operations the parser may apply to each row (MAX_SYMOPS when none are listed)

    @property
    def atom_rows(self) -> int:
        """Rows of the atom loop with a positive (or no) occupancy."""
        return len(self.atoms)

    @property
    def positions(self) -> int:
        """Most atom positions the parser can generate (before merging those that coincide)."""
        return self.atom_rows * self.symops

    def check_overlaps(self) -> None:
        """Refuse rows on one spot whose occupancies add up to more than 1 (two atoms in one place).

        The parser then returns no structure at all. Shared sites of a disordered
        crystal add up to at most 1 and pass. Quadratic in the rows: call it once
        their number is known to be bounded.
        """
        import numpy as np

        frac = np.array([xyz for _, xyz, _ in self.atoms])
        occ = np.array([o for _, _, o in self.atoms])
        d = frac[:, None] - frac[None]
        d -= np.round(d)
        close = np.abs(d * np.array(self.cell[:3])).max(axis=-1) < 1e-2  # within 0.01 A along each axis
        if (over := np.flatnonzero((close * occ[None]).sum(axis=1) > 1.001)).size:
            i = int(over[0])
            j = int(next(k for k in np.flatnonzero(close[i]) if k != i))
            raise UploadError(f"Atom rows {self.atoms[i][0]} and {self.atoms[j][0]} of the CIF sit on the same spot "
                              "with occupancies that add up to more than 1: two atoms in one place.")


def _norm(tag: str) -> str:
    # Tags are case-insensitive; CIF 2 writes _cell.length_a where CIF 1 writes _cell_length_a.
    return tag.lower().replace(".", "_")


def _line_tokens(line: str):
    # A quoted value ends at the first matching quote followed by white space (CIF 1.1), so 'O'Brien' is one
    # value. The ends are found once per line, not searched from every quote: a regular expression that
    # backtracks would be quadratic on a line of 'a 'a 'a ...
    ends = {q: [m.start() for m in re.finditer(q + r"(?=\s|$)", line)] for q in "'\"" if q in line}
    i = 0
    while (m := _NONSPACE.search(line, i)) is not None:
        i = m.start()
        if line[i] == "#":
            return
        if line[i] in ends and (k := bisect.bisect_right(ends[line[i]], i)) < len(ends[line[i]]):
            j = ends[line[i]][k]
            yield line[i + 1: j], False
            i = j + 1
            continue
        j = _SPACE.search(line, i)
        j = len(line) if j is None else j.start()
        tok = line[i:j]
        yield tok, tok.startswith("_") or tok.lower().startswith(_RESERVED)
        i = j


def tokens(text: str):
    """``(value, line number, is a tag or keyword)`` of each token; a ``;`` text field is one value, ``?``."""
    field_start = None
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith(";"):
            if field_start is None:
                field_start = no
            else:
                field_start = None
                yield "?", no, False  # no value the parser needs is a text field: stands for "unknown"
            continue
        if field_start is None:
            for tok, special in _line_tokens(line):
                yield tok, no, special
    if field_start is not None:
        raise UploadError(f"The CIF's text field opened with ';' on line {field_start} is never closed "
                          "(a line starting with ';' must end it).")


def blocks(text: str) -> list[Block]:
    """The data blocks of a CIF: their single items and loops."""
    out: list[Block] = []
    loop: Loop | None = None
    pending: tuple[str, int, str] | None = None  # an item tag waiting for its value
    for tok, no, special in tokens(text):
        low = tok.lower()
        if special and low.startswith("data_"):
            out.append(Block(tok[5:], no))
            loop, pending = None, None
        elif special and low == "loop_":
            loop, pending = Loop([], [], [], no), None
            if out:
                out[-1].loops.append(loop)
        elif special and tok.startswith("_"):
            if loop is not None and not loop.values:
                loop.tags.append(_norm(tok))
                loop.raw_tags.append(tok)
            else:
                loop, pending = None, (_norm(tok), no, tok)
        elif special:  # save_, global_, stop_
            loop, pending = None, None
        elif loop is not None:
            loop.values.append((tok, no))
        elif pending is not None and out:
            out[-1].items[pending[0]] = (tok, no, pending[2])
            pending = None
    return out


def number(value: str) -> float | None:
    """A CIF number (``4.0123(5)``: the standard uncertainty is dropped); None when it is none."""
    m = _NUMBER.fullmatch(value.strip())
    if m is None:
        return None
    x = float(m.group(1))
    return x if math.isfinite(x) else None


def _cell(block: Block) -> list[float]:
    values = []
    for tag in CELL_TAGS:
        if tag not in block.items:
            what = "the unit cell is not given" if tag.startswith("_cell_length") else "the cell's angles are not given"
            raise UploadError(f"The CIF has no {tag}: {what} (the parser needs all of {', '.join(CELL_TAGS)}).")
        raw, no, _ = block.items[tag]
        x = number(raw)
        if x is None:
            raise UploadError(f"The CIF's {tag} (line {no}) is {quoted(raw)}, not a number.")
        if tag.startswith("_cell_length") and x <= 0:
            raise UploadError(f"The CIF's {tag} (line {no}) is {x:g} A; a cell length must be above 0.")
        if tag.startswith("_cell_angle") and not 0 < x < 180:
            raise UploadError(f"The CIF's {tag} (line {no}) is {x:g} degrees; a cell angle lies between 0 and 180.")
        values.append(x)
    ca, cb, cg = (math.cos(math.radians(v)) for v in values[3:])
    if 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg <= 1e-8:
        raise UploadError(f"The CIF's cell angles ({values[3]:g}, {values[4]:g}, {values[5]:g} degrees) leave the "
                          "cell no volume: its three axes lie in one plane.")
    return values


def _rows(loop: Loop) -> list[list[tuple[str, int]]]:
    n = len(loop.tags)
    if not loop.values:
        raise UploadError(f"The CIF's atom loop (line {loop.line}) has column headers but no rows: no atoms.")
    if len(loop.values) % n:
        per_line: dict[int, int] = {}
        for _, no in loop.values:
            per_line[no] = per_line.get(no, 0) + 1
        # Where one row sits on each line, the first line of another length is the bad row; rows may also be
        # wrapped over several lines (pymatgen writes them so), and then no line can be blamed.
        if sum(c == n for c in per_line.values()) * 2 >= len(per_line) - 1:
            seen = 0
            for no, count in per_line.items():
                if count != n:
                    raise UploadError(
                        f"The CIF's atom loop has a row with {'fewer' if count < n else 'more'} values than its {n} "
                        f"column headers (row {seen // n + 1}, line {no}, has {count}); a value that is unknown is "
                        "written '?'.")
                seen += count
        raise UploadError(f"The CIF's atom loop holds {len(loop.values)} values for its {n} column headers: "
                          "some row has values missing (or too many).")
    return [loop.values[i: i + n] for i in range(0, len(loop.values), n)]


def _symops(block: Block) -> int:
    loop = block.loop_with(_SYMOP_TAGS)
    if loop is None:
        return _group_symops(block)
    ops = [v for v, _ in loop.values[loop.tags.index(next(t for t in _SYMOP_TAGS if t in loop.tags))::len(loop.tags)]]
    if not ops or not all(_SYMOP.fullmatch(op) for op in ops):
        return _group_symops(block)  # the parser falls back on the space group too
    centring = block.loop_with((_CENTERING_TAG,))
    return len(ops) * max(1, len(centring.values) // len(centring.tags) if centring else 1)


def _group_symops(block: Block) -> int:
    # Without a list of operations the parser takes them from the space group's symbol or number (pymatgen's
    # tables, as here; the most of either, in case they name different settings); MAX_SYMOPS when neither reads.
    from pymatgen.symmetry.groups import SpaceGroup

    counts = []
    for tag in _GROUP_SYMBOL_TAGS:
        if tag in block.items:
            try:
                counts.append(len(SpaceGroup(block.items[tag][0].replace(" ", "")).symmetry_ops))
            except Exception:  # any symbol pymatgen's table lacks: the number, if given, still counts
                continue
    for tag in _GROUP_NUMBER_TAGS:
        n = number(block.items[tag][0]) if tag in block.items else None
        if n is not None and n == int(n) and 1 <= n <= 230:
            counts.append(len(SpaceGroup.from_int_number(int(n)).symmetry_ops))
    return max(counts) if counts else MAX_SYMOPS


def _atoms(block: Block) -> list[tuple[int, list[float], float]]:
    loop = block.loop_with(COORD_TAGS)
    if loop is None:
        raise UploadError("The CIF has no atom positions: no loop with _atom_site_fract_x, _atom_site_fract_y and "
                          "_atom_site_fract_z (fractional coordinates; Cartesian ones are not read).")
    missing = [t for t in COORD_TAGS if t not in loop.tags]
    if missing:
        raise UploadError(f"The CIF's atom loop (line {loop.line}) has no {', '.join(missing)} column.")
    rows = _rows(loop)
    at = [loop.tags.index(t) for t in COORD_TAGS]
    occ = loop.tags.index("_atom_site_occupancy") if "_atom_site_occupancy" in loop.tags else None
    kept = []
    for k, row in enumerate(rows, 1):
        xyz = []
        for i in at:
            raw, no = row[i]
            x = number(raw)
            if x is None:
                raise UploadError(f"Atom row {k} of the CIF (line {no}) has {loop.tags[i]} = {quoted(raw)}, "
                                  "not a number.")
            xyz.append(x)
        o = 1.0
        if occ is not None and row[occ][0] not in ("?", "."):
            o = number(row[occ][0])
            if o is None or o > 1.001:
                raise UploadError(f"Atom row {k} of the CIF (line {row[occ][1]}) has occupancy "
                                  f"{quoted(row[occ][0])}; an occupancy is a number from 0 to 1.")
        if o > 0:
            kept.append((k, xyz, o))
    if not kept:
        raise UploadError("Every atom row of the CIF has occupancy 0: no atoms.")
    return kept


def scan(text: str) -> Scan:
    """Check a CIF's text and count what the parser would build from it.

    Raises
    ------
    UploadError
        No data block, more than one structure, no or a degenerate cell, no atom
        loop, rows with values missing, or coordinates or occupancies that are not
        numbers; each message names the place in the file. Linear in the file's
        size; atoms on one spot are checked by :meth:`Scan.check_overlaps`.
    """
    found = blocks(text)
    if not found:
        raise UploadError("The CIF has no data block: a CIF starts its data with a line 'data_<name>'.")
    with_atoms = [b for b in found if b.loop_with(COORD_TAGS)]
    if len(with_atoms) > 1:
        raise UploadError(f"The CIF holds {len(with_atoms)} structures (data blocks with atom positions, from line "
                          f"{with_atoms[0].line} and {with_atoms[1].line}); upload one structure per file.")
    block = with_atoms[0] if with_atoms else next((b for b in found if b.items), found[0])
    cell = _cell(block)
    atoms = _atoms(block)
    return Scan(block.name, rebuilt(block), cell, atoms, _symops(block))


def _emit(value: str) -> str:
    # A value the parser reads back as itself: bare when it can be, else in quotes it cannot close early.
    if _PLAIN.fullmatch(value) and not value.lower().startswith(_RESERVED):
        return value
    return "'" + value.replace("'", "") + "'"


def rebuilt(block: Block) -> str:
    """The CIF the parser gets: ``block``'s cell, symmetry and atom items and loops, one loop row per line."""
    out = ["data_upload"]
    out += [f"{raw} {_emit(v)}" for tag, (v, _, raw) in block.items.items() if tag.startswith(_PARSED)]
    for loop in block.loops:
        if loop.tags and (loop.tags[0].startswith(_PARSED) or any(t in loop.tags for t in COORD_TAGS)):
            n = len(loop.tags)
            out += ["loop_", *loop.raw_tags]
            out += [" ".join(_emit(v) for v, _ in loop.values[i: i + n]) for i in range(0, len(loop.values), n)]
    return "\n".join(out) + "\n"
