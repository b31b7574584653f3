"""Plotly figures for the health page: latent-space map and RMSE bars with spread."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go


def latent_figure(z: np.ndarray, soh: np.ndarray, labels: list[str],
                  chosen: tuple[float, float] | None = None) -> go.Figure:
    """Real curves in the generator's 2D latent space, coloured by SOH; the chosen point as a star."""
    z = np.atleast_2d(z)
    fig = go.Figure(go.Scatter(
        # Labels name cells from files; plotly draws text as its own HTML subset, so they are escaped.
        x=z[:, 0], y=z[:, 1], mode="markers", text=[html.escape(str(s), quote=False) for s in labels],
        customdata=np.arange(len(z)),
        marker={"color": soh, "colorscale": "Viridis", "size": 6, "colorbar": {"title": {"text": "SOH"}}},
        hovertemplate="%{text}<br>z=(%{x:.2f}, %{y:.2f})<extra></extra>", name="real curves",
    ))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen[0]], y=[chosen[1]], mode="markers", name="chosen",
                                 marker={"symbol": "star", "size": 16, "color": "crimson"}))
    fig.update_layout(xaxis_title="z1", yaxis_title="z2", height=380, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 30, "b": 45}, showlegend=False)
    return fig


def rmse_bar_figure(summary: dict[str, tuple[float, float]], title: str = "") -> go.Figure:
    """Mean RMSE per arm with a +- 1 std error bar."""
    arms = list(summary)
    means = [summary[a][0] for a in arms]
    stds = [summary[a][1] for a in arms]
    fig = go.Figure(go.Bar(x=arms, y=means, error_y={"type": "data", "array": stds},
                           marker_color=["#7f7f7f", "#1f77b4", "#2ca02c", "#d62728"][: len(arms)],
                           hovertemplate="%{x}: %{y:.2f} SOH points<extra></extra>"))
    fig.update_layout(yaxis_title="held-out SOH RMSE (points)", title=title, height=360,
                      template="plotly_white", margin={"l": 50, "r": 20, "t": 40, "b": 45})
    return fig
