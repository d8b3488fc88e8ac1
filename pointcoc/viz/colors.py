"""Cluster colours: distinct, deterministic, and never equal to the border or "no cluster" colours."""

from __future__ import annotations

import colorsys

import numpy as np

BORDER = (255, 255, 255)  # region-partition borders on image pictures
UNGROUPED = (190, 190, 190)  # points of a stage's set that no kNN group gathered
CONTEXT = (225, 225, 225)  # input points that did not reach the shown stage

# Tableau-20 without its greys, reordered so that the first colours differ most.
_BASE = (
    "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 bcbd22 17becf 393b79 "
    "aec7e8 ffbb78 98df8a ff9896 c5b0d5 c49c94 f7b6d2 dbdb8d 9edae5 637939"
).split()


def hex_color(rgb) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def cluster_colors(n: int) -> np.ndarray:
    """``n`` distinct RGB colours ``[n, 3]`` uint8; colour ``i`` is the same whatever ``n`` is."""
    colors = [tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in _BASE[:n]]
    taken = {*colors, BORDER, UNGROUPED, CONTEXT}
    step = 0
    while len(colors) < n:
        # golden-angle hues with alternating saturation/value: neighbours in index differ visibly
        hue = (step * 0.618033988749895) % 1.0
        sat, val = 0.55 + 0.4 * (step % 2), 0.6 + 0.35 * ((step // 2) % 2)
        rgb = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
        step += 1
        if rgb not in taken:
            taken.add(rgb)
            colors.append(rgb)
    return np.asarray(colors, dtype=np.uint8).reshape(n, 3)
