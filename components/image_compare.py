"""Before / after image comparison with linked zoom (plotly)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Largest side sent to the browser; bigger images are strided for display only.
MAX_DISPLAY_SIDE = 1024


def display_stride(shape: tuple[int, ...], max_side: int = MAX_DISPLAY_SIDE) -> int:
    return max(1, int(np.ceil(max(shape[-2:]) / max_side)))


def compare_figure(
    before: np.ndarray,
    after: np.ndarray,
    titles: tuple[str, str] = ("before", "after"),
    colorscale: str = "gray",
) -> go.Figure:
    """Two 2D images side by side; zooming one zooms the other.

    Images of different sizes (e.g. super-resolution) are shown in the same
    physical frame: the axes are in units of the *after* image's pixels.
    """
    before, after = np.asarray(before), np.asarray(after)
    if before.ndim != 2 or after.ndim != 2:
        raise ValueError(f"compare_figure needs 2D images, got {before.shape} and {after.shape}")
    scale = after.shape[0] / before.shape[0]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.03)
    for col, (img, px) in enumerate(((before, scale), (after, 1.0)), start=1):
        k = display_stride(img.shape)
        shown = img[::k, ::k].astype(np.float32)
        fig.add_trace(
            go.Heatmap(z=shown, dx=px * k, dy=px * k, colorscale=colorscale, showscale=False,
                       hovertemplate="x %{x:.0f}, y %{y:.0f}: %{z:.4g}<extra></extra>"),
            row=1, col=col,
        )
    h, w = after.shape
    # Fixed ranges + constrain="domain": keep the aspect ratio by shrinking the plot area, not by
    # padding the axes with empty space (wide CT slices would otherwise float in white).
    fig.update_xaxes(range=[0, w], matches="x", constrain="domain")
    fig.update_yaxes(range=[h, 0], scaleanchor="x", matches="y", constrain="domain")
    fig.update_yaxes(showticklabels=False, row=1, col=2)  # shared with the left panel
    panel_px = 560  # about half of a wide-layout page
    height = int(np.clip(panel_px * h / w + 60, 260, 760))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def show_compare(before: np.ndarray, after: np.ndarray, titles: tuple[str, str] = ("before", "after")) -> None:
    import streamlit as st

    st.plotly_chart(compare_figure(before, after, titles), width="stretch")
