"""Point layers drawn as one PNG-ready RGB array with matplotlib (Agg, no pyplot state: thread-safe)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .point_clusters import PointLayer

# (elevation, azimuth) in degrees: an oblique view, the same turned by 90 degrees, and from above
VIEWS = ((20.0, -60.0), (20.0, 30.0), (89.0, -90.0))
MARKER_AREA = 14.0  # points^2 of a marker of scale 1
PANEL_INCHES, TITLE_LINE_INCHES, DPI = 3.6, 0.2, 100


def render_layers(
    panels: Sequence[tuple[PointLayer, tuple[float, float]]], title: str, columns: int = 2
) -> np.ndarray:
    """3D panels, each ``(layer, view)``, in rows of ``columns`` under ``title``; ``[H, W, 3]`` uint8.

    Markers are opaque and not depth-shaded, so every point keeps its exact colour (tests and the browser
    check count them).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    title_inches = TITLE_LINE_INCHES * (title.count("\n") + 1) + 0.3  # the title, then the panel titles
    fig = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows + title_inches), dpi=DPI)
    FigureCanvasAgg(fig)
    for i, (layer, (elev, azim)) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        ax.view_init(elev=elev, azim=azim)
        order = np.argsort(layer.sizes, kind="stable")  # large markers (centers) on top
        ax.scatter(
            *layer.points[order].T,
            c=layer.colors[order] / 255.0,
            s=layer.sizes[order] * MARKER_AREA,
            edgecolors=np.where(layer.outlined[order, None], [[0.1, 0.1, 0.1, 1.0]], [[0.0, 0.0, 0.0, 0.0]]),
            linewidths=0.6,
            depthshade=False,
        )
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.set_axis_off()
        ax.set_title(layer.name, fontsize=8, wrap=True)
    fig.suptitle(title, fontsize=9, y=1.0 - 0.05 / (PANEL_INCHES * rows + title_inches), va="top")
    top = 1.0 - title_inches / (PANEL_INCHES * rows + title_inches)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=top, wspace=0.0, hspace=0.08)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
