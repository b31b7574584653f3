"""A campaign's energies on Ray: actors that each hold one loaded potential, fed in parallel.

The cluster is the app's one engine (:mod:`battgai.core.engine`: a local Ray by default, a cluster by
address). A worker process killed mid-task (out of memory, a node lost) is restarted by Ray and the task
run again (``max_restarts`` / ``max_task_retries``); relaxations and energies are pure functions of
their input, so a retried one gives the same answer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

Progress = Callable[[int, int], None]
#: How often Ray restarts a dead worker and re-runs the tasks it had, before a campaign gives up.
MAX_RESTARTS = 3


class PotentialWorker:
    """One process holding one loaded potential (CHGNet by default); Ray runs it as an actor."""

    def __init__(self, potential: str = "chgnet"):
        from battgai.materials.checks import stability

        self.potential = potential
        if potential == "chgnet":
            stability.load_chgnet()  # once per worker: every call after this reuses it
        else:
            stability.load_sevennet()

    def pid(self) -> int:
        return os.getpid()

    def cpu(self) -> float:
        """CPU seconds this worker process has used (a campaign's CPU-time budget counts them)."""
        import time

        return time.process_time()

    def static(self, structures: list) -> list[float]:
        from battgai.materials.checks.stability import static_energies

        return [float(e) for e in static_energies(structures, potential=self.potential)]

    def relax(self, structure, steps: int, fmax: float) -> tuple[object | None, float, str]:
        """``(relaxed structure, energy per atom, "")``, or ``(None, nan, why)`` when it had to stop."""
        from battgai.materials.checks.stability import RelaxationError, relax

        try:
            final, energy = relax(structure, steps=steps, fmax=fmax, potential=self.potential)
        except RelaxationError as exc:
            return None, math.nan, str(exc)
        return final, float(energy), ""


    def dft(self, structure, preset) -> tuple:
        """:func:`battgai.materials.dft.verify.calc_task`: one DFT energy, or the reason there is none."""
        from battgai.materials.dft.verify import calc_task

        return calc_task(structure, preset)


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

    def cpu_seconds(self) -> float:
        """CPU seconds the workers have used so far, together."""
        import ray

        return float(sum(ray.get([a.cpu.remote() for a in self.actors])))

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

    def dft(self, structures: Sequence, preset, progress: Progress | None = None) -> list[tuple]:
        """DFT of each structure (:meth:`PotentialWorker.dft`), in parallel over the workers."""
        return self._map("dft", list(structures), progress, preset)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
