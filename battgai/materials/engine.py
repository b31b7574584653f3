"""Ray as the engine of a campaign: actors that each hold one loaded potential, fed in parallel.

Without an address :func:`connect` starts a local Ray (one CPU per core of the machine; nothing for a
user to set up); with ``--ray-address`` or ``RAY_ADDRESS`` it joins an existing cluster, after
checking that the address answers at all, so a typo is a clear message in seconds instead of a
20-second hang inside ``ray.init``. Every node of such a cluster needs battgai and its requirements
installed; a local cluster gets this checkout on ``PYTHONPATH``.

A worker process killed mid-task (out of memory, a node lost) is restarted by Ray and the task
run again (``max_restarts`` / ``max_task_retries``); relaxations and energies are pure functions of
their input, so a retried one gives the same answer.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

from battgai.registry import REPO_ROOT

Progress = Callable[[int, int], None]
#: How often Ray restarts a dead worker and re-runs the tasks it had, before a campaign gives up.
MAX_RESTARTS = 3
#: Seconds to wait for an existing cluster's address to accept a TCP connection.
CONNECT_SECONDS = 5.0


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


class PotentialWorker:
    """One process holding one loaded potential (CHGNet by default); Ray runs it as an actor."""

    def __init__(self, potential: str = "chgnet"):
        from battgai.materials import stability

        self.potential = potential
        if potential == "chgnet":
            stability.load_chgnet()  # once per worker: every call after this reuses it
        else:
            stability.load_sevennet()

    def pid(self) -> int:
        return os.getpid()

    def static(self, structures: list) -> list[float]:
        from battgai.materials.stability import static_energies

        return [float(e) for e in static_energies(structures, potential=self.potential)]

    def relax(self, structure, steps: int, fmax: float) -> tuple[object | None, float, str]:
        """``(relaxed structure, energy per atom, "")``, or ``(None, nan, why)`` when it had to stop."""
        from battgai.materials.stability import RelaxationError, relax

        try:
            final, energy = relax(structure, steps=steps, fmax=fmax, potential=self.potential)
        except RelaxationError as exc:
            return None, math.nan, str(exc)
        return final, float(energy), ""


class Engine:
    """``workers`` :class:`PotentialWorker` actors on the connected Ray cluster (default: one per CPU)."""

    def __init__(self, workers: int | None = None, potential: str = "chgnet"):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.n_workers = max(1, min(workers or cpus, cpus))
        actor = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(PotentialWorker)
        self.actors = [actor.remote(potential) for _ in range(self.n_workers)]

    def pids(self) -> list[int]:
        """Process ids of the workers (to watch them, or to kill one in a test)."""
        import ray

        return ray.get([a.pid.remote() for a in self.actors])

    def _map(self, method: str, items: Sequence, progress: Progress | None, *args) -> list:
        # Each worker takes the next item as soon as it is free, so a slow relaxation does not hold up the others.
        from ray.util import ActorPool

        pool, out = ActorPool(self.actors), []
        for k, result in enumerate(pool.map(lambda a, x: getattr(a, method).remote(x, *args), items)):
            out.append(result)
            if progress:
                progress(k + 1, len(items))
        return out

    def static_energies(self, structures: Sequence, progress: Progress | None = None) -> list[float]:
        """Static energy per atom of each structure (NaN where the potential gives none)."""
        chunks = [list(structures[k: k + 8]) for k in range(0, len(structures), 8)]
        done = self._map("static", chunks, progress and (lambda k, n: progress(min(8 * k, len(structures)),
                                                                              len(structures))))
        return [e for chunk in done for e in chunk]

    def relax(self, structures: Sequence, steps: int, fmax: float,
              progress: Progress | None = None) -> list[tuple[object | None, float, str]]:
        """:meth:`PotentialWorker.relax` of each structure, in parallel over the workers."""
        return self._map("relax", list(structures), progress, steps, fmax)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
