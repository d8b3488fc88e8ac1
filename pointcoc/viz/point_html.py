"""Point layers as one self-contained HTML page: a canvas viewer (drag to turn, wheel to zoom, a menu of
layers) with its data and script inline, so it opens offline and from an e-mail attachment."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from .colors import hex_color
from .point_clusters import PointLayer

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px sans-serif; margin: 12px; }}
canvas {{ border: 1px solid #ccc; cursor: grab; touch-action: none; }}
</style></head>
<body>
<h3>{title}</h3>
<p><select id="layer"></select> drag: turn, wheel: zoom</p>
<canvas id="view" width="720" height="720"></canvas>
<script id="data" type="application/json">{data}</script>
<script>
const D = JSON.parse(document.getElementById("data").textContent);
const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
const menu = document.getElementById("layer");
D.layers.forEach((layer, i) => menu.add(new Option(layer.name, i)));
menu.value = D.initial;
let yaw = -0.9, pitch = 0.35, zoom = 1.0, drag = null;
function draw() {{
  const L = D.layers[menu.value], n = L.sizes.length, half = canvas.width / 2;
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const screen = [];
  for (let i = 0; i < n; i++) {{
    const x = L.xyz[3 * i], y = L.xyz[3 * i + 1], z = L.xyz[3 * i + 2];
    const u = cy * x - sy * y, v = sy * x + cy * y;  // turn about z (up), then tilt
    const scale = half * 0.8 * zoom;
    screen.push([half + scale * u, half - scale * (cp * z - sp * v), cp * v + sp * z, i]);
  }}
  screen.sort((a, b) => b[2] - a[2]);  // far points first
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const [px, py, , i] of screen) {{
    ctx.beginPath();
    ctx.arc(px, py, 2.2 * L.sizes[i] * Math.sqrt(zoom), 0, 2 * Math.PI);
    ctx.fillStyle = L.colors[i];
    ctx.fill();
    if (L.outlined[i]) {{ ctx.strokeStyle = "#1a1a1a"; ctx.stroke(); }}
  }}
}}
menu.onchange = draw;
canvas.onpointerdown = (e) => {{ drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); }};
canvas.onpointerup = () => {{ drag = null; }};
canvas.onpointermove = (e) => {{
  if (!drag) return;
  yaw += (e.clientX - drag[0]) * 0.01;
  pitch = Math.max(-1.5, Math.min(1.5, pitch + (e.clientY - drag[1]) * 0.01));
  drag = [e.clientX, e.clientY];
  draw();
}};
canvas.onwheel = (e) => {{ e.preventDefault(); zoom *= Math.exp(-e.deltaY * 0.001); draw(); }};
draw();
</script>
</body></html>
"""


def layers_html(layers: Sequence[PointLayer], title: str, initial: int = 0) -> str:
    """The viewer page for ``layers``, showing ``layers[initial]`` first."""
    data = {
        "initial": initial,
        "layers": [
            {
                "name": layer.name,
                "xyz": [round(float(v), 4) for v in layer.points.reshape(-1)],
                "colors": [hex_color(rgb) for rgb in layer.colors],
                "sizes": [round(float(s), 3) for s in layer.sizes],
                "outlined": [int(o) for o in layer.outlined],
            }
            for layer in layers
        ],
    }
    # "</" would end the script element early; JSON allows the escaped form
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(title), data=payload)
