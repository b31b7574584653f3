"""The run store: every finished run of every page lands here, with its provenance and its files.

A run is a folder ``BATTGAI_HOME/runs/<id>/`` holding ``run.json`` (task, title, settings, status,
provenance, the process that owns it), the files a user downloads (``files/``) and the state a page
needs to reopen it (``state.json`` + ``state.npz``). The store is plain files on purpose: a refresh,
a closed tab, a server restart or a ``kill -9`` loses nothing that was written, and the CLI, the pages
and the campaigns read one format.

Why the status can be trusted: a run is written as "running" before its work starts and as
"finished" only after every file is on disk (``run.json`` is replaced atomically). A "running" run
whose owning process is gone (the server was killed, the machine rebooted) is reported as
"interrupted", never silently dropped.

Page state is stored without pickle (reopening a folder must not run code): dataclasses of
``battgai``, numpy arrays, pymatgen structures, dicts, lists and tuples are written as JSON plus one
``.npz`` of arrays, and only those types are rebuilt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import io
import json
import os
import secrets
import shutil
import socket
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from battgai import __version__

HOME_ENV = "BATTGAI_HOME"
#: Statuses a run can have on disk; "interrupted" is derived when its owner is gone.
STATUSES = ("running", "finished", "failed", "stopped", "interrupted")
#: Tasks, with the page that reopens them.
TASK_PAGES = {
    "materials.generate": "pages/materials.py",
    "materials.energies": "pages/materials.py",
    "materials.dft": "pages/materials.py",
    "microstructure.enhance": "pages/microstructure.py",
    "microstructure.segment": "pages/microstructure.py",
    "microstructure.generate": "pages/microstructure.py",
    "microstructure.fusion": "pages/microstructure.py",
    "health.generate": "pages/health.py",
    "health.experiment": "pages/health.py",
    "health.transfer": "pages/health.py",
    "materials.campaign": "pages/campaigns.py",
}


class RunNotFound(KeyError):
    """No run with that id in the store."""


def home() -> Path:
    """The app's local folder: ``BATTGAI_HOME``, else ``$XDG_DATA_HOME/battgai``, else ``~/.local/share/battgai``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "battgai"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _owner() -> dict[str, Any]:
    """This process, identified so that a reused pid is not taken for it (start time, host)."""
    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _owner_alive(owner: Mapping[str, Any]) -> bool | None:
    """Whether the process that owns a run still runs; None when it is on another host."""
    import psutil

    if owner.get("host") != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 1e-3
    except (psutil.Error, KeyError, ValueError):
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a process resumed after a crash) sees the old file or the
    whole new one, never a part.

    Written next to its target, flushed, then renamed. A full disk fails on the temporary file, which is removed;
    the old file is untouched. The folder is synced too, so the rename itself survives a crash.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- state codec: JSON + arrays, no pickle ----------------------------------------------------------------------


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:  # object arrays would need pickle; ours hold strings (cell ids)
            obj = obj.astype(str)
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        if not cls.__module__.startswith("battgai."):
            raise TypeError(f"only battgai dataclasses are stored, not {cls.__module__}.{cls.__qualname__}")
        fields = {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj) if f.init}
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if type(obj).__name__ == "Structure" and type(obj).__module__.startswith("pymatgen."):
        return {"__structure__": obj.as_dict()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in the run store")


#: Where classes named by stores written before the packages were split by stage live now:
#: a run a user saved then must still reopen.
FORMER_MODULES = {
    "battgai.cifscan": "battgai.uploads.cifscan",
    "battgai.data": "battgai.core.data",
    "battgai.fetch": "battgai.core.fetch",
    "battgai.health.diffusion": "battgai.health.generation.diffusion",
    "battgai.health.diffusion_sample": "battgai.health.generation.diffusion_sample",
    "battgai.health.diffusion_train": "battgai.health.generation.diffusion_train",
    "battgai.health.estimator": "battgai.health.estimation.estimator",
    "battgai.health.experiment": "battgai.health.estimation.experiment",
    "battgai.health.generators": "battgai.health.generation.generators",
    "battgai.health.model": "battgai.health.generation.model",
    "battgai.health.owncells": "battgai.health.estimation.owncells",
    "battgai.health.sample": "battgai.health.generation.sample",
    "battgai.health.trajectory": "battgai.health.generation.trajectory",
    "battgai.health.transfer": "battgai.health.estimation.transfer",
    "battgai.materials.battery": "battgai.materials.checks.battery",
    "battgai.materials.bundle": "battgai.materials.checks.bundle",
    "battgai.materials.campaign": "battgai.materials.discovery.campaign",
    "battgai.materials.corpus": "battgai.materials.training.corpus",
    "battgai.materials.finetune": "battgai.materials.discovery.finetune",
    "battgai.materials.model": "battgai.materials.generation.model",
    "battgai.materials.reward": "battgai.materials.discovery.reward",
    "battgai.materials.sample": "battgai.materials.generation.sample",
    "battgai.materials.stability": "battgai.materials.checks.stability",
    "battgai.materials.tokenizer": "battgai.materials.generation.tokenizer",
    "battgai.materials.train": "battgai.materials.training.train",
    "battgai.microstructure.fusion": "battgai.microstructure.generation.fusion",
    "battgai.microstructure.generator": "battgai.microstructure.generation.generator",
    "battgai.microstructure.guard": "battgai.microstructure.enhancement.guard",
    "battgai.microstructure.metrics": "battgai.microstructure.analysis.metrics",
    "battgai.microstructure.model": "battgai.microstructure.enhancement.model",
    "battgai.microstructure.selffit": "battgai.microstructure.enhancement.selffit",
    "battgai.microstructure.slicegan": "battgai.microstructure.generation.slicegan",
    "battgai.provenance": "battgai.core.provenance",
    "battgai.registry": "battgai.core.registry",
    "battgai.runs": "battgai.core.runs",
}
FORMER_CLASSES = {"battgai.health.train:TrainConfig": "battgai.health.generation.cvae_train:TrainConfig"}


def _decode(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    if "__structure__" in obj:
        from pymatgen.core import Structure

        return Structure.from_dict(obj["__structure__"])
    if "__dataclass__" in obj:
        module, _, name = FORMER_CLASSES.get(obj["__dataclass__"], obj["__dataclass__"]).partition(":")
        module = FORMER_MODULES.get(module, module)
        if not module.startswith("battgai."):  # a hand-edited file must not import anything else
            raise ValueError(f"refusing to rebuild {obj['__dataclass__']}: not a battgai class")
        cls = getattr(importlib.import_module(module), name)
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{obj['__dataclass__']} is not a dataclass")
        return cls(**{k: _decode(v, arrays) for k, v in obj["fields"].items()})
    raise ValueError(f"unknown stored object with keys {sorted(obj)}")


# --- records and the store ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` says of one run, with its status as it stands now."""

    id: str
    task: str
    title: str
    status: str
    created: str
    finished: str | None
    settings: dict[str, Any]
    provenance: dict[str, Any] | None
    files: tuple[str, ...]
    error: str
    path: Path
    battgai_version: str

    @property
    def model(self) -> str:
        return (self.provenance or {}).get("model") or self.settings.get("model", "")

    @property
    def page(self) -> str | None:
        return TASK_PAGES.get(self.task)

    def read(self, name: str) -> bytes:
        """One of the run's files."""
        if name not in self.files:
            raise FileNotFoundError(f"run {self.id} has no file {name!r}")
        return (self.path / "files" / name).read_bytes()

    def state(self) -> Any:
        """The object the page saved to reopen this run (None when it saved none)."""
        js = self.path / "state.json"
        if not js.exists():
            return None
        npz = self.path / "state.npz"
        arrays: Mapping[str, np.ndarray] = {}
        if npz.exists():
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        return _decode(json.loads(js.read_text()), arrays)

    def zip(self) -> bytes:
        """Every file of the run plus ``provenance.json`` and ``run.json``, as one zip."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in self.files:
                zf.write(self.path / "files" / name, name)
            if self.provenance is not None:
                zf.writestr("provenance.json", json.dumps(self.provenance, indent=2, sort_keys=True, default=str))
            zf.write(self.path / "run.json", "run.json")
        return buf.getvalue()


class Run:
    """A run being made: files and state go in, then :meth:`finish` marks it finished.

    Used as a context manager, a run left by an exception is marked failed (with the message), and one
    left by anything else that unwinds the stack (Streamlit stopping a script when the user presses
    Stop or closes the tab, Ctrl-C) is marked stopped.
    """

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self._meta = meta

    @property
    def id(self) -> str:
        return self._meta["id"]

    def _flush(self) -> None:
        write_atomic(self.path / "run.json", json.dumps(self._meta, indent=2, default=str).encode())

    def write(self, name: str, data: bytes) -> None:
        """Add a file a user can download (a plain name, no folders)."""
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"a run file needs a plain name, got {name!r}")
        write_atomic(self.path / "files" / name, data)
        if name not in self._meta["files"]:
            self._meta["files"].append(name)
            self._flush()  # a run cut off later still lists what it wrote

    def save_state(self, obj: Any) -> None:
        """Keep what the page needs to reopen the run (see the module docstring for the types allowed)."""
        arrays: dict[str, np.ndarray] = {}
        encoded = _encode(obj, arrays)
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            write_atomic(self.path / "state.npz", buf.getvalue())
        write_atomic(self.path / "state.json", json.dumps(encoded).encode())

    def set(self, **fields: Any) -> None:
        """Update the title, settings or provenance shown on the Runs page."""
        for key, value in fields.items():
            if key not in ("title", "settings", "provenance"):
                raise KeyError(f"cannot set {key!r} on a run")
            self._meta[key] = value.as_dict() if hasattr(value, "as_dict") else value
        self._flush()

    def finish(self, status: str = "finished", error: str = "") -> None:
        if status not in ("finished", "failed", "stopped"):
            raise ValueError(f"a run ends finished, failed or stopped, not {status!r}")
        self._meta.update(status=status, finished=_now(), error=error)
        self._flush()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self._meta["status"] != "running":
            return
        if kind is None:
            self.finish()
        elif issubclass(kind, Exception):
            self.finish("failed", f"{kind.__name__}: {exc}")
        else:
            self.finish("stopped", "stopped before it finished (Stop pressed, tab closed or server stopped)")


class RunStore:
    """All runs under one folder (default :func:`home`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else home()

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def start(self, task: str, title: str, settings: Mapping[str, Any] | None = None) -> Run:
        """Create a run in status "running", before its work starts."""
        if task not in TASK_PAGES:
            raise ValueError(f"unknown task {task!r}; one of {sorted(TASK_PAGES)}")
        # Microseconds in the id: folders sort newest first even for runs started within one second.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
        run_id = f"{stamp}-{task.replace('.', '-')}-{secrets.token_hex(3)}"
        path = self.runs_dir / run_id
        try:
            (path / "files").mkdir(parents=True)
        except OSError as exc:
            raise OSError(f"cannot create a run folder under {self.runs_dir} ({exc.strerror}); "
                          f"set {HOME_ENV} to a writable folder") from exc
        meta = {"id": run_id, "task": task, "title": title, "status": "running", "created": _now(),
                "finished": None, "settings": dict(settings or {}), "provenance": None, "files": [],
                "error": "", "owner": _owner(), "battgai_version": __version__}
        run = Run(path, meta)
        run._flush()
        return run

    def _record(self, path: Path) -> RunRecord:
        meta = json.loads((path / "run.json").read_text())
        status = meta["status"]
        if status == "running" and _owner_alive(meta.get("owner", {})) is False:
            status = "interrupted"
        return RunRecord(id=meta["id"], task=meta["task"], title=meta["title"], status=status,
                         created=meta["created"], finished=meta.get("finished"), settings=meta.get("settings", {}),
                         provenance=meta.get("provenance"), files=tuple(meta.get("files", ())),
                         error=meta.get("error", ""), path=path, battgai_version=meta.get("battgai_version", ""))

    def get(self, run_id: str) -> RunRecord:
        path = self.runs_dir / run_id
        if Path(run_id).name != run_id or not (path / "run.json").exists():
            raise RunNotFound(run_id)
        return self._record(path)

    def __iter__(self) -> Iterator[RunRecord]:
        """Every readable run, newest first (a folder without a readable run.json is skipped)."""
        if not self.runs_dir.exists():
            return
        for path in sorted(self.runs_dir.iterdir(), reverse=True):
            try:
                yield self._record(path)
            except (OSError, ValueError, KeyError):
                continue

    def list(self, task: str | None = None) -> list[RunRecord]:
        return [r for r in self if task is None or r.task == task or r.task.startswith(f"{task}.")]

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.get(run_id).path)
