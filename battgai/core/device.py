"""Pick the torch device once: cuda -> mps -> cpu, overridable with ``BATTGAI_DEVICE``."""

from __future__ import annotations

import functools
import os


@functools.cache
def get_device() -> str:
    """Return the torch device string the backend runs models on.

    ``BATTGAI_DEVICE`` (e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides the
    automatic choice; an override naming a device that is not available raises
    ``RuntimeError`` instead of silently falling back.
    """
    import torch

    wanted = os.environ.get("BATTGAI_DEVICE", "").strip().lower()
    if wanted:
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"BATTGAI_DEVICE={wanted} but no CUDA device is available")
        if wanted == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("BATTGAI_DEVICE=mps but MPS is not available")
        if not (wanted == "cpu" or wanted == "mps" or wanted.startswith("cuda")):
            raise RuntimeError(f"BATTGAI_DEVICE={wanted!r}: expected cpu, mps or cuda[:N]")
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe_device() -> str:
    """Human-readable description of the device, for the UI."""
    import torch

    dev = get_device()
    if dev.startswith("cuda"):
        return f"GPU ({torch.cuda.get_device_name(torch.device(dev))})"
    if dev == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({os.cpu_count()} cores, torch {torch.__version__})"
