"""``python -m battgai data status | fetch``: the shared datasets, checked against a manifest in the repo.

``battgai/core/data_manifest.json`` lists every file of the data folder the project
reads (``BATTGAI_DATA_DIR``) with its size and sha256, and, where the file is
a copy of one public file, that file's address: ``transform: "none"`` for a
byte-for-byte copy, ``"gzip"`` for a gzip of it (then ``content_sha256`` is
the hash of the original, since gzip headers differ between compressors).
Files the data folder holds in a repackaged form (merged, converted) have no
single public original; they come from a mirror of the data folder
(``--mirror`` / ``BATTGAI_DATA_MIRROR``, an ``http(s)://`` or ``file://``
address laid out like the folder).

A download goes to ``<file>.part`` and continues from there when run again
(HTTP range requests); a file is moved into place only once its hash matches,
and a file whose hash does not match is refused and fetched again.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from battgai.core.registry import sha256_file

MANIFEST = Path(__file__).resolve().parent / "data_manifest.json"
CHUNK = 1 << 16
TIMEOUT_S = 30
#: Attempts per file: a corrupted download is refused and fetched again once.
ATTEMPTS = 2
Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class DataFile:
    path: str  # relative to the data folder
    bytes: int
    sha256: str
    source: str | None = None  # public address of the original, if there is one file
    transform: str = "none"  # "none" | "gzip": how the stored file derives from ``source``
    content_sha256: str | None = None  # sha256 of the decompressed content, for "gzip"


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    folder: str
    description: str
    licence: str
    origin: str
    files: tuple[DataFile, ...]


@dataclasses.dataclass(frozen=True)
class FileStatus:
    file: DataFile
    state: str  # "ok" | "missing" | "corrupt" | "partial"


class FetchError(RuntimeError):
    """A file could not be fetched or verified (the reason is in the message)."""


def load_manifest(path: Path | None = None) -> dict[str, Dataset]:
    raw = json.loads((path or MANIFEST).read_text())
    return {name: Dataset(name, d["folder"], d["description"], d["licence"], d["origin"],
                          tuple(DataFile(**f) for f in d["files"]))
            for name, d in raw["datasets"].items()}


def select(manifest: dict[str, Dataset], names: Sequence[str]) -> list[Dataset]:
    """Datasets by name (all when ``names`` is empty); unknown names raise with the known ones."""
    if unknown := [n for n in names if n not in manifest]:
        raise FetchError(f"unknown dataset{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                         f"known: {', '.join(manifest)}")
    return [manifest[n] for n in names] if names else list(manifest.values())


def _sha256(path: Path, gunzip: bool = False) -> str:
    if not gunzip:
        return sha256_file(path)
    with gzip.open(path, "rb") as f:  # the hash of the original a stored gzip was made from
        return hashlib.file_digest(f, "sha256").hexdigest()


def verified(path: Path, f: DataFile) -> bool:
    """The file at ``path`` is ``f``: same sha256, or for a gzip of a public file, the same content."""
    if not path.is_file():
        return False
    if _sha256(path) == f.sha256:
        return True
    if f.transform == "gzip" and f.content_sha256:
        try:
            return _sha256(path, gunzip=True) == f.content_sha256
        except (OSError, EOFError):  # not gzip at all, or truncated
            return False
    return False


def status(datasets: Sequence[Dataset], root: Path) -> list[FileStatus]:
    out = []
    for d in datasets:
        for f in d.files:
            target = root / f.path
            if verified(target, f):
                state = "ok"
            elif target.exists():
                state = "corrupt"
            elif target.with_name(target.name + ".part").exists():
                state = "partial"
            else:
                state = "missing"
            out.append(FileStatus(f, state))
    return out


def _address(f: DataFile, mirror: str | None) -> tuple[str, bool]:
    """Where to download ``f`` from, and whether the bytes there are the stored file (else the original)."""
    if mirror:
        return f"{mirror.rstrip('/')}/{f.path}", True
    if f.source is None:
        raise FetchError(f"{f.path}: no single public original (the data folder holds it repackaged); "
                         "fetch it from a mirror of the data folder: --mirror URL or BATTGAI_DATA_MIRROR")
    return f.source, f.transform == "none"


def _download(url: str, part: Path, progress: Progress | None, label: str, expected: int | None) -> None:
    """Append the rest of ``url`` to ``part`` (a range request when part of it is there)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is complete already
            return
        raise FetchError(f"{label}: {url} answered HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{label}: cannot reach {url} ({reason}); offline? Nothing was changed") from e
    with response:
        resumed = have and getattr(response, "status", 200) == 206
        length = int(response.headers.get("Content-Length") or 0)
        done = have if resumed else 0
        total = done + length if length else expected or 0
        with open(part, "ab" if resumed else "wb") as out:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(label, done, total)
            except (OSError, http.client.HTTPException) as e:
                raise FetchError(f"{label}: the download broke off at {done:,} bytes ({e!r}); "
                                 "run the same command again to continue") from e
        if length and done < total:
            raise FetchError(f"{label}: the download broke off at {done:,} of {total:,} bytes; "
                             "run the same command again to continue")


def fetch_file(f: DataFile, root: Path, mirror: str | None = None, progress: Progress | None = None) -> str:
    """Make ``root / f.path`` the verified file; returns "present" or "fetched", raises :class:`FetchError`."""
    target = root / f.path
    if verified(target, f):
        return "present"
    url, stored_form = _address(f, mirror)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in range(ATTEMPTS):
        _download(url, part, progress, f.path, f.bytes if stored_form else None)
        if stored_form:
            ok = _sha256(part) == f.sha256 or (f.transform == "gzip" and verified(part, f))
        else:  # the public original: check it, then gzip it as the data folder stores it
            ok = _sha256(part) == f.content_sha256
            if ok:
                packed = part.with_name(part.name + ".gz")
                with open(part, "rb") as src, gzip.open(packed, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                packed.replace(part)
        if ok:
            part.replace(target)
            return "fetched"
        part.unlink()  # refused: fetched again from the start
        if attempt + 1 == ATTEMPTS:
            raise FetchError(f"{f.path}: the file from {url} does not match its sha256 in the manifest "
                             f"(tried {ATTEMPTS} times); it was not kept")
    raise AssertionError("unreachable")


def fetch(datasets: Sequence[Dataset], root: Path, mirror: str | None = None,
          progress: Progress | None = None, report: Callable[[str], None] = print) -> list[str]:
    """Fetch every file of ``datasets`` into ``root``; returns the failures (one line each)."""
    files = [f for d in datasets for f in d.files]
    failures = []
    for k, f in enumerate(files, 1):
        try:
            outcome = fetch_file(f, root, mirror, progress)
        except (FetchError, OSError) as e:
            failures.append(str(e))
            report(f"[{k}/{len(files)}] FAILED {e}")
        else:
            report(f"[{k}/{len(files)}] {outcome:8s} {f.path} ({f.bytes / 1e6:.1f} MB)")
    return failures


def _bar(label: str, done: int, total: int) -> None:
    if total:
        sys.stderr.write(f"\r  {label}: {done / 1e6:.1f} / {total / 1e6:.1f} MB ({100 * done / total:3.0f} %)")
    else:
        sys.stderr.write(f"\r  {label}: {done / 1e6:.1f} MB")
    sys.stderr.flush()


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def main(command: str, names: Sequence[str], mirror: str | None) -> int:
    """The ``data`` subcommand; returns the exit status."""
    from battgai.core.data import data_dir

    root = data_dir()
    try:
        datasets = select(load_manifest(), names)
    except FetchError as e:
        print(e, file=sys.stderr)
        return 2
    if command == "status":
        print(f"data folder: {root} (BATTGAI_DATA_DIR)")
        states = status(datasets, root)
        by_file = {s.file.path: s.state for s in states}
        for d in datasets:
            counts = [by_file[f.path] for f in d.files]
            n_ok = counts.count("ok")
            mb = sum(f.bytes for f in d.files) / 1e6
            print(f"{d.name:36s} {n_ok:3d}/{len(d.files):<3d} ok {mb:6.1f} MB  {_short(d.description)}")
            for f in d.files:
                if by_file[f.path] != "ok":
                    print(f"    {by_file[f.path]:8s} {f.path}")
        return 0 if all(s.state == "ok" for s in states) else 1
    mirror = mirror or os.environ.get("BATTGAI_DATA_MIRROR") or None
    print(f"fetching into {root}" + (f" from {mirror}" if mirror else " from the original public sources"))
    tty = sys.stderr.isatty()  # a byte counter only where it redraws in place
    failures = fetch(datasets, root, mirror, _bar if tty else None,
                     lambda line: print("\r" * tty + line, flush=True))
    if failures:
        print(f"\n{len(failures)} file{'s' * (len(failures) > 1)} not fetched:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("every file verified against its sha256")
    return 0
