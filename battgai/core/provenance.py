"""Provenance attached to every result a user can download."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from battgai import __version__


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Who made a result: model (name + sha256), settings, seed and time.

    Examples
    --------
    >>> p = Provenance.now(model="demo", sha256="00", settings={"n": 2}, seed=0)
    >>> json.loads(p.to_json())["model"]
    'demo'
    """

    model: str
    sha256: str
    settings: dict[str, Any]
    seed: int | None
    created: str
    battgai_version: str = __version__

    @classmethod
    def now(
        cls, model: str, sha256: str, settings: dict[str, Any], seed: int | None = None
    ) -> Provenance:
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(model=model, sha256=sha256, settings=dict(settings), seed=seed, created=created)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True, default=str)
