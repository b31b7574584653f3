"""``python -m battgai data status | fetch`` against a local file server (no network in tests)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from battgai.cli import main as cli_main
from battgai.core import fetch
from battgai.core.data import DATASETS, data_dir

PAYLOAD = bytes(range(256)) * 400  # 100 kB, several read chunks


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Mirror:
    """A threaded HTTP server over ``root`` that honours Range requests and can misbehave on purpose."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        self.corrupt_next = 0  # answer this many requests with flipped bytes
        self.cut_next = 0  # answer this many requests with half the body, then drop the connection
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests.append((self.path, self.headers.get("Range")))
                path = mirror.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body, start = path.read_bytes(), 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                if mirror.corrupt_next:
                    mirror.corrupt_next -= 1
                    body = bytes(b ^ 0xFF for b in body)
                part = body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if mirror.cut_next:
                    mirror.cut_next -= 1
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the client sees a short read
                    return
                self.wfile.write(part)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    (root / "materials" / "toy").mkdir(parents=True)
    (root / "materials" / "toy" / "big.bin").write_bytes(PAYLOAD)
    (root / "materials" / "toy" / "SOURCE.md").write_text("# toy\n")
    (root / "original").mkdir()
    (root / "original" / "table.csv").write_bytes(b"a,b\n1,2\n" * 500)
    m = Mirror(root)
    yield m
    m.close()


def _dataset(files: list[fetch.DataFile]) -> fetch.Dataset:
    return fetch.Dataset("toy", "materials/toy", "a toy dataset", "MIT", "tests", tuple(files))


def _big(source: str | None = None) -> fetch.DataFile:
    return fetch.DataFile("materials/toy/big.bin", len(PAYLOAD), _sha(PAYLOAD), source)


def test_fetch_from_a_mirror_verifies_every_file_and_status_says_so(mirror, tmp_path):
    readme = fetch.DataFile("materials/toy/SOURCE.md", 6, _sha(b"# toy\n"))
    ds = _dataset([_big(), readme])
    dest = tmp_path / "data"
    assert [s.state for s in fetch.status([ds], dest)] == ["missing", "missing"]
    seen = []
    assert fetch.fetch([ds], dest, mirror.url, progress=lambda *a: seen.append(a), report=lambda _: None) == []
    assert (dest / "materials/toy/big.bin").read_bytes() == PAYLOAD
    assert [s.state for s in fetch.status([ds], dest)] == ["ok", "ok"]
    assert seen[-1][1:] == (6, 6) and any(a[0] == "materials/toy/big.bin" and a[1] < a[2] for a in seen)
    n = len(mirror.requests)
    fetch.fetch([ds], dest, mirror.url, report=lambda _: None)
    assert len(mirror.requests) == n  # verified files are not downloaded again


def test_a_corrupted_download_is_refused_and_fetched_again(mirror, tmp_path):
    dest = tmp_path / "data"
    mirror.corrupt_next = 1
    assert fetch.fetch_file(_big(), dest, mirror.url) == "fetched"
    assert (dest / "materials/toy/big.bin").read_bytes() == PAYLOAD
    assert len(mirror.requests) == 2


def test_a_mirror_that_keeps_serving_a_bad_file_fails_and_keeps_nothing(mirror, tmp_path):
    dest = tmp_path / "data"
    mirror.corrupt_next = 99
    with pytest.raises(fetch.FetchError, match="does not match its sha256"):
        fetch.fetch_file(_big(), dest, mirror.url)
    assert not (dest / "materials/toy/big.bin").exists()
    assert not (dest / "materials/toy/big.bin.part").exists()


def test_a_corrupted_file_on_disk_is_refused_and_fetched_again(mirror, tmp_path):
    dest = tmp_path / "data"
    target = dest / "materials/toy/big.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD[:-1] + b"x")
    assert [s.state for s in fetch.status([_dataset([_big()])], dest)] == ["corrupt"]
    assert fetch.fetch_file(_big(), dest, mirror.url) == "fetched"
    assert target.read_bytes() == PAYLOAD


def test_an_interrupted_fetch_resumes_where_it_stopped(mirror, tmp_path):
    dest = tmp_path / "data"
    mirror.cut_next = 1
    with pytest.raises(fetch.FetchError, match="run the same command again"):
        fetch.fetch_file(_big(), dest, mirror.url)
    part = dest / "materials/toy/big.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert [s.state for s in fetch.status([_dataset([_big()])], dest)] == ["partial"]
    assert fetch.fetch_file(_big(), dest, mirror.url) == "fetched"
    assert mirror.requests[-1][1] == f"bytes={kept}-"  # only the rest was asked for
    assert (dest / "materials/toy/big.bin").read_bytes() == PAYLOAD and not part.exists()


def test_a_gzip_of_a_public_original_is_checked_on_the_original_and_stored_compressed(mirror, tmp_path):
    raw = (mirror.root / "original" / "table.csv").read_bytes()
    f = fetch.DataFile("materials/toy/table.csv.gz", 0, "0" * 64, f"{mirror.url}/original/table.csv", "gzip",
                       _sha(raw))
    dest = tmp_path / "data"
    assert fetch.fetch_file(f, dest) == "fetched"
    assert gzip.decompress((dest / f.path).read_bytes()) == raw
    assert fetch.verified(dest / f.path, f)


def test_offline_or_without_a_source_says_what_failed_and_changes_nothing(tmp_path):
    dest = tmp_path / "data"
    failures = fetch.fetch([_dataset([_big()])], dest, "http://127.0.0.1:9", report=lambda _: None)
    assert len(failures) == 1 and "cannot reach" in failures[0] and "offline?" in failures[0]
    assert not (dest / "materials/toy/big.bin").exists()
    with pytest.raises(fetch.FetchError, match="mirror"):
        fetch.fetch_file(_big(source=None), dest)


def test_the_cli_fetches_named_datasets_from_a_mirror(mirror, tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"datasets": {"toy": {
        "folder": "materials/toy", "description": "a toy", "licence": "MIT", "origin": "tests",
        "files": [{"path": "materials/toy/big.bin", "bytes": len(PAYLOAD), "sha256": _sha(PAYLOAD)}]}}}))
    monkeypatch.setattr(fetch, "MANIFEST", manifest)
    monkeypatch.setenv("BATTGAI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BATTGAI_DATA_MIRROR", mirror.url)
    with pytest.raises(SystemExit) as e:
        cli_main(["data", "status"])
    assert e.value.code == 1 and "missing  materials/toy/big.bin" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli_main(["data", "fetch", "toy"])
    assert e.value.code == 0 and "every file verified" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli_main(["data", "fetch", "nope"])
    assert e.value.code == 2 and "unknown dataset nope; known: toy" in capsys.readouterr().err


def test_the_manifest_covers_every_folder_the_code_reads():
    manifest = fetch.load_manifest()
    folders = {d.folder for d in manifest.values()}
    for key, (rel, _) in DATASETS.items():
        assert any(f == rel or f.startswith(rel + "/") for f in folders), key
    for d in manifest.values():
        assert all(f.path.startswith(d.folder + "/") and len(f.sha256) == 64 for f in d.files)
        assert any(f.path.endswith("SOURCE.md") for f in d.files)


def test_the_shared_data_matches_the_manifest():
    if not (data_dir() / "materials").exists():
        pytest.skip(f"shared data not found at {data_dir()} (BATTGAI_DATA_DIR)")
    bad = [s for s in fetch.status(list(fetch.load_manifest().values()), data_dir()) if s.state != "ok"]
    assert not bad, [(s.file.path, s.state) for s in bad]
