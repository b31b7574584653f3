"""Denoising and super-resolution with the bundled nets: seamless tiled inference, 2D and stacks.

Tiling is exact, not blended: each tile is cut with a margin of ``model.halo`` input pixels (the
network's receptive-field radius) and only its centre is kept, so every output pixel sees the
same context as in a whole-image pass. The whole image is reflect-padded by the same margin in
both cases, which makes tiled and whole-image results equal up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from battgai.microstructure.enhancement.stack import Progress, float_slice, map_slices
from battgai.microstructure.io import to_float

#: Bundled model names per task.
MODEL_NAMES = {"denoise": "microstructure_denoise", 2: "microstructure_sr_x2", 4: "microstructure_sr_x4"}


def load_model(name: str, device: str | None = None):
    """Rebuild a bundled :class:`~battgai.microstructure.enhancement.model.EnhanceNet` from its card.

    Returns
    -------
    model : EnhanceNet
        In eval mode on ``device`` (default :func:`battgai.core.device.get_device`).
    card : ModelCard
    """
    from battgai.core import registry
    from battgai.core.device import get_device
    from battgai.microstructure.enhancement.model import EnhanceConfig, EnhanceNet

    device = device or get_device()
    state, card = registry.load_tensors(name, device="cpu")
    model = EnhanceNet(EnhanceConfig(**card.config))
    model.load_state_dict(state)
    # channels_last runs these small convolutions ~2.5x faster on CPU (measured: 1024^2 x2, 1 thread).
    import torch

    return model.to(device, memory_format=torch.channels_last).eval(), card


def _tiles(shape: tuple[int, ...], tile: int | None) -> int:
    h, w = shape[-2:]
    tile = max(h, w) if tile is None else int(tile)
    return -(-h // tile) * -(-w // tile)


def _apply_2d(model, image: np.ndarray, tile: int | None, batch: int,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    import torch

    scale, m = model.config.scale, model.halo
    h, w = image.shape
    tile = max(h, w) if tile is None else int(tile)
    if tile < 8:
        raise ValueError(f"tile must be at least 8 pixels, got {tile}")
    ny, nx = -(-h // tile), -(-w // tile)
    # Pad to whole tiles plus the halo; the first m reflected rows are the same whatever the
    # extra padding, so the kept pixels do not depend on the tile size.
    padded = np.pad(image, ((m, m + ny * tile - h), (m, m + nx * tile - w)), mode="reflect")
    corners = [(y * tile, x * tile) for y in range(ny) for x in range(nx)]
    out = np.empty((ny * tile * scale, nx * tile * scale), np.float32)
    device = next(model.parameters()).device
    keep = slice(m * scale, (m + tile) * scale)
    with torch.inference_mode():
        for i in range(0, len(corners), batch):
            chunk = corners[i:i + batch]
            x = np.stack([padded[y:y + tile + 2 * m, x:x + tile + 2 * m] for y, x in chunk])
            y_hat = model(torch.from_numpy(x[:, None]).to(device)).float().cpu().numpy()[:, 0]
            for (y, x_), patch in zip(chunk, y_hat, strict=True):
                out[y * scale:(y + tile) * scale, x_ * scale:(x_ + tile) * scale] = patch[keep, keep]
            if on_batch is not None:
                on_batch(len(chunk))
    return out[: h * scale, : w * scale]


def apply_model(
    image: np.ndarray, model, tile: int | None = 256, batch: int = 4, progress: Progress | None = None
) -> np.ndarray:
    """Run an :class:`EnhanceNet` on a 2D image or slice by slice on a 3D stack.

    Parameters
    ----------
    image : ndarray, 2D ``(H, W)`` or 3D ``(Z, H, W)``
        Any supported dtype; scaled to [0, 1] with :func:`~battgai.microstructure.io.to_float`, one
        slice at a time on the whole image's range.
    model : EnhanceNet
    tile : int or None
        Tile side in input pixels; ``None`` runs each slice in one pass (more memory).
    batch : int
        Tiles per forward pass.
    progress : callable(done, total), optional
        Called after each batch of tiles, counting tiles over the whole stack (a page stops a
        long run at its next progress call, so it should come often: at least once per slice).

    Returns
    -------
    ndarray of float32, ``scale`` times larger in-plane, values clipped to [0, 1]. A stack's result
    is written into one preallocated array, so a stack costs its result and one slice's work.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or a 3D stack, got shape {image.shape}")
    if min(image.shape[-2:]) < 2:
        raise ValueError(f"image slices must be at least 2 x 2 pixels, got {image.shape}")
    total, done = _tiles(image.shape, tile) * (1 if image.ndim == 2 else len(image)), 0
    as_float = float_slice(image)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    def one(sl: np.ndarray) -> np.ndarray:
        return np.clip(_apply_2d(model, as_float(sl), tile, batch, tick if progress is not None else None), 0.0, 1.0)

    return map_slices(one, image, scale=model.config.scale)


def denoise(image: np.ndarray, model=None, tile: int | None = 256, progress: Progress | None = None) -> np.ndarray:
    """Denoise a 2D image or stack with the bundled denoiser (or ``model``).

    Examples
    --------
    >>> from battgai.microstructure.io import demo_image
    >>> denoise(demo_image((64, 64))).shape
    (64, 64)
    """
    if model is None:
        model, _ = load_model(MODEL_NAMES["denoise"])
    if model.config.scale != 1:
        raise ValueError(f"denoise needs a scale-1 model, got scale {model.config.scale}")
    return apply_model(image, model, tile=tile, progress=progress)


def upscale(
    image: np.ndarray, scale: int, model=None, tile: int | None = 256, progress: Progress | None = None
) -> np.ndarray:
    """Super-resolve a 2D image or stack (in-plane) by ``scale`` = 2 or 4.

    Examples
    --------
    >>> from battgai.microstructure.io import demo_image
    >>> upscale(demo_image((32, 32)), 2).shape
    (64, 64)
    """
    if scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4, got {scale}")
    if model is None:
        model, _ = load_model(MODEL_NAMES[scale])
    if model.config.scale != scale:
        raise ValueError(f"model upscales by {model.config.scale}, asked for {scale}")
    return apply_model(image, model, tile=tile, progress=progress)


def bicubic(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsampling (Keys kernel, a = -0.75, as in torch / OpenCV): the SR baseline."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(to_float(image))[None, None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return np.clip(y[0, 0].numpy(), 0.0, 1.0)


def skimage_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Classical skimage upscaling: bicubic spline ``rescale(order=3)`` then ``unsharp_mask``."""
    from skimage.filters import unsharp_mask
    from skimage.transform import rescale

    up = rescale(image, scale, order=3, mode="reflect", anti_aliasing=False)
    return np.clip(unsharp_mask(up, radius=scale, amount=0.7), 0.0, 1.0).astype(np.float32)
