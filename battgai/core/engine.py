"""The one engine of heavy work: Ray, local by default, a cluster by address.

A page's heavy step (generation, energies, enhancement, fitting to an image, health experiments)
runs through :func:`run` in a Ray worker process, never in the Streamlit server's process: every
browser session's script shares that one process, and a job's Python there (pymatgen, sklearn,
the samplers' loops) held the interpreter lock long enough to make an idle page wait tens of
seconds for its render. Campaigns use the same cluster with actors of their own
(:mod:`battgai.materials.discovery.engine`).

Without an address :func:`connect` starts a local Ray (one CPU per core of the machine; nothing for a
user to set up); with ``RAY_ADDRESS`` (or a campaign's ``--ray-address``) it joins an existing
cluster, after checking that the address answers at all, so a typo is a clear message in seconds
instead of a 20-second hang inside ``ray.init``. Every node of such a cluster needs battgai and its
requirements installed; a local cluster gets this checkout on ``PYTHONPATH``.

``BATTGAI_ENGINE=inline`` runs :func:`run`'s function in the calling process instead (the page
tests under ``streamlit.testing`` do, so that their monkeypatches reach the code they test; the
end-to-end tests and the load bench serve the app on Ray).
"""

from __future__ import annotations

import functools
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

from battgai.core.registry import REPO_ROOT

#: Seconds to wait for an existing cluster's address to accept a TCP connection.
CONNECT_SECONDS = 5.0
MODE_ENV = "BATTGAI_ENGINE"
MODES = ("ray", "inline")
#: Settings a worker takes from the process that submits the job, so a job reads the data, weights and run
#: store the page reads (a worker started earlier, or on another node, has its own environment).
FORWARDED_ENV_PREFIXES = ("BATTGAI_", "HF_HUB_OFFLINE")


class EngineError(RuntimeError):
    """Ray could not be started or reached (the message says what to do)."""


def _host_port(address: str) -> tuple[str, int] | None:
    # "auto" and "local" are resolved by Ray itself; "ray://h:p" is the client port, "h:p" the GCS port.
    if address in ("auto", "local"):
        return None
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or parsed.port is None:
        raise EngineError(f"Ray address {address!r} is not host:port (or ray://host:port)")
    return parsed.hostname, parsed.port


def check_address(address: str) -> None:
    """Raise :class:`EngineError` unless ``address`` accepts a connection within :data:`CONNECT_SECONDS`."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                          "`ray start --head` there, or leave the address empty to run on this machine") from exc


def resolve_address(address: str | None) -> str | None:
    """The address asked for, else ``RAY_ADDRESS``, else None (a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` or start a local one; returns True when this call started Ray.

    A Ray already initialised in this process is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = resolve_address(address)
    # Workers must import battgai: on this machine it is this checkout.
    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT), "BATTGAI_DEVICE": os.environ.get("BATTGAI_DEVICE",
                                                                                               "cpu")}}
    quiet = {"logging_level": "ERROR", "log_to_driver": False, "runtime_env": runtime_env}
    if address:
        check_address(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError) as exc:
            raise EngineError(f"could not join the Ray cluster at {address}: {exc}") from exc
    else:
        # "local": a new Ray of our own, never one another program left running on this machine.
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return True


def mode() -> str:
    """``BATTGAI_ENGINE``: ``"ray"`` (default) or ``"inline"``."""
    value = os.environ.get(MODE_ENV, "ray")
    if value not in MODES:
        raise EngineError(f"{MODE_ENV} must be one of {MODES}, got {value!r}")
    return value


_CONNECT_LOCK = threading.Lock()


def ensure_connected() -> None:
    """:func:`connect` once per process, whichever session's job comes first (``RAY_ADDRESS`` picks a cluster).

    Ray is started from a thread of its own that lives as long as the process. A local Ray's services
    die with the *thread* that started them (Linux's parent-death signal follows the thread), and the
    thread of a Streamlit session ends with the session: the next job then found no Ray and took the
    server down with it.
    """
    import ray

    with _CONNECT_LOCK:
        if ray.is_initialized():
            return
        started = threading.Event()
        failed: list[BaseException] = []

        def hold() -> None:
            try:
                connect()
            except BaseException as exc:  # raised in the caller's thread below
                failed.append(exc)
            started.set()
            if not failed:
                threading.Event().wait()

        threading.Thread(target=hold, name="battgai-engine", daemon=True).start()
        started.wait()
        if failed:
            raise failed[0]


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def _picklable(obj: object) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


def _events(fn: Callable, args: tuple, kwargs: dict, callbacks: tuple[str, ...], env: Mapping[str, str]
            ) -> Iterator[tuple[str, Any]]:
    """The worker's side: run ``fn`` and stream what it reports, then its result or its exception.

    ``fn`` runs in a thread so that its callbacks (called from deep inside it) can be turned into
    the generator's items; calls that pile up while the page is slower than ``fn`` are merged,
    each callback keeping its latest arguments.
    """
    os.environ.update(env)
    pending: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}
    proxies = {name: functools.partial(lambda n, *a: pending.put((n, a)), name) for name in callbacks}

    def work() -> None:
        try:
            outcome["result"] = fn(*args, **kwargs, **proxies)
        except Exception as exc:  # sent back whole: the page catches the same types as when run inline
            outcome["error"] = exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")
        finally:
            pending.put(None)

    threading.Thread(target=work, daemon=True).start()
    finished = False
    while not finished:
        latest = {}
        item = pending.get()
        while item is not None:
            latest[item[0]] = item[1]
            try:
                item = pending.get_nowait()
            except queue.Empty:
                break
        finished = item is None
        for name, call_args in latest.items():
            yield "callback", (name, call_args)
    if "error" in outcome:
        yield "error", outcome["error"]
    else:
        yield "result", outcome.get("result")


@functools.cache
def _remote_events():
    import ray

    return ray.remote(num_cpus=1, max_retries=0)(_events)


def run(fn: Callable, /, *args, callbacks: Mapping[str, Callable] | None = None, **kwargs) -> Any:
    """``fn(*args, **kwargs, **callbacks)`` in a worker process of the engine; its result, or its exception.

    Parameters
    ----------
    fn : callable
        A module-level backend function (workers import it by name), with picklable arguments.
    callbacks : mapping of str to callable, optional
        Keyword arguments of ``fn`` that report back (progress bars): called here, in the caller's
        thread, with the arguments ``fn`` gave them in the worker. Whatever a callback raises
        (Streamlit stops a script that way when the user presses Stop or closes the tab) cancels
        the job and kills its worker process, and propagates.

    Notes
    -----
    An exception ``fn`` raises is raised here as the same object, so ``except ValueError`` around
    a call reads the same as around ``fn`` itself. With ``BATTGAI_ENGINE=inline`` ``fn`` is called
    in this process.
    """
    callbacks = dict(callbacks or {})
    if mode() == "inline":
        return fn(*args, **kwargs, **callbacks)
    import ray

    ensure_connected()
    stream = _remote_events().remote(fn, args, kwargs, tuple(callbacks), _forwarded_env())
    finished = False
    try:
        for ref in stream:
            kind, payload = ray.get(ref)
            if kind == "callback":
                name, call_args = payload
                callbacks[name](*call_args)
            elif kind == "error":
                finished = True
                raise payload
            else:
                finished = True
                return payload
    finally:
        if not finished:
            ray.cancel(stream, force=True)
    raise EngineError("the worker ended without a result")
