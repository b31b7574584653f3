"""Plotly figures of curves (discharge curves, trajectories) coloured by a value such as SOH."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale


@dataclass
class Curve:
    x: np.ndarray
    y: np.ndarray
    name: str
    value: float | None = None  # coloured on the colour scale when given
    dash: bool = False  # synthetic curves are dashed
    markers: bool = False  # points without a line (estimates outside the training range)


def curve_figure(
    curves: Sequence[Curve],
    x_title: str,
    y_title: str,
    color_title: str = "SOH",
    colorscale: str = "Viridis",
) -> go.Figure:
    """Line plot of ``curves``; those with a ``value`` share one colour scale with a colour bar."""
    if not curves:
        raise ValueError("curve_figure needs at least one curve")
    values = np.array([c.value for c in curves if c.value is not None], dtype=float)
    lo, hi = (values.min(), values.max()) if values.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    fig = go.Figure()
    for c in curves:
        # Curve names come from files (cell ids, file names); plotly draws names as its own HTML subset (links,
        # bold, styled spans), so they are escaped, and the hover reads the name instead of pasting it into its
        # template (where %{...} would be a placeholder).
        color = None
        if c.value is not None:
            color = sample_colorscale(colorscale, [(c.value - lo) / span])[0]
        fig.add_trace(
            go.Scatter(
                x=np.asarray(c.x), y=np.asarray(c.y), mode="markers" if c.markers else "lines",
                name=html.escape(str(c.name), quote=False),
                line={"color": color, "dash": "dash" if c.dash else "solid", "width": 1.5},
                marker={"symbol": "x", "size": 6, "color": color} if c.markers else None,
                hovertemplate="%{fullData.name}<br>%{x:.3g}, %{y:.4g}<extra></extra>",
            )
        )
    if values.size:
        # An invisible marker trace carries the colour bar for the line traces.
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                marker={"colorscale": colorscale, "cmin": lo, "cmax": hi, "color": [lo],
                        "colorbar": {"title": {"text": color_title}}, "showscale": True},
            )
        )
    fig.update_layout(
        xaxis_title=x_title, yaxis_title=y_title, showlegend=len(curves) <= 12,
        margin={"l": 50, "r": 20, "t": 30, "b": 45}, height=420, template="plotly_white",
    )
    return fig


def show_curves(curves: Sequence[Curve], x_title: str, y_title: str, **kwargs) -> None:
    import streamlit as st

    st.plotly_chart(curve_figure(curves, x_title, y_title, **kwargs), width="stretch")
