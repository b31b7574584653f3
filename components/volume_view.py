"""Plotly views of microstructures: 3D phase isosurfaces (downsampled) and grey-level histograms."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

#: Largest side sent to the browser for 3D views; bigger volumes are strided for display only.
MAX_3D_SIDE = 48
PHASE_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2")


def volume_figure(labels: np.ndarray, names: dict[int, str] | None = None, phases: tuple[int, ...] | None = None,
                  max_side: int = MAX_3D_SIDE) -> go.Figure:
    """Isosurfaces of the chosen phases of a 3D label volume, strided to at most ``max_side`` per axis."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"volume_figure needs a 3D volume, got shape {labels.shape}")
    k = max(1, int(np.ceil(max(labels.shape) / max_side)))
    shown = labels[::k, ::k, ::k]
    z, y, x = np.mgrid[0:shown.shape[0], 0:shown.shape[1], 0:shown.shape[2]] * k
    fig = go.Figure()
    for p in phases if phases is not None else tuple(int(v) for v in np.unique(shown)):
        fig.add_trace(go.Isosurface(
            x=x.ravel(), y=y.ravel(), z=z.ravel(), value=(shown == p).astype(np.float32).ravel(),
            isomin=0.5, isomax=1.0, surface_count=1, opacity=0.6, showscale=False,
            colorscale=[[0, PHASE_COLOURS[p % 5]], [1, PHASE_COLOURS[p % 5]]],
            caps={"x_show": True, "y_show": True, "z_show": True},
            name=(names or {}).get(p, f"phase {p}"), showlegend=True,
        ))
    fig.update_layout(height=480, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      title=f"3D view (every {k}th voxel)" if k > 1 else "3D view",
                      scene={"aspectmode": "data"})
    return fig


def histogram_figure(images: dict[str, np.ndarray], bins: int = 128, max_values: int = 200_000,
                     thresholds: tuple[float, ...] = ()) -> go.Figure:
    """Overlaid grey-level histograms (values in [0, 1]) of several images, subsampled for speed.

    ``thresholds`` are drawn as dashed vertical lines (segmentation thresholds).
    """
    fig = go.Figure()
    for name, img in images.items():
        values = np.asarray(img, dtype=np.float32).ravel()
        values = values[:: max(1, values.size // max_values)]
        hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0), density=True)
        fig.add_trace(go.Scatter(x=0.5 * (edges[1:] + edges[:-1]), y=hist, mode="lines", name=name,
                                 line={"shape": "hvh"}))
    for t in thresholds:
        fig.add_vline(x=t, line_dash="dash", line_color="#e45756")
    fig.update_layout(xaxis_title="grey level", yaxis_title="density", height=320, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 30, "b": 45})
    return fig


def labels_figure(labels: np.ndarray, names: dict[int, str] | None = None) -> go.Figure:
    """A 2D label image with one colour per phase."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels_figure needs a 2D image, got shape {labels.shape}")
    k = max(1, int(np.ceil(max(labels.shape) / 1024)))
    n = int(labels.max()) + 1
    scale = []
    for p in range(n):
        c = PHASE_COLOURS[p % 5]
        scale += [[p / n, c], [(p + 1) / n, c]]
    fig = go.Figure(go.Heatmap(z=labels[::k, ::k], dx=k, dy=k, zmin=-0.5, zmax=n - 0.5, colorscale=scale,
                               colorbar={"tickvals": list(range(n)),
                                         "ticktext": [(names or {}).get(p, str(p)) for p in range(n)]}))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def image_figure(image: np.ndarray, title: str = "input", max_side: int = 1024) -> go.Figure:
    """One grey image (a single slice), strided to at most ``max_side`` pixels per side for display."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image_figure needs a 2D image, got shape {image.shape}")
    k = max(1, int(np.ceil(max(image.shape) / max_side)))
    fig = go.Figure(go.Heatmap(z=image[::k, ::k], dx=k, dy=k, colorscale="gray", showscale=False,
                               hovertemplate="x %{x:.0f}, y %{y:.0f}: %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=title)
    return fig
