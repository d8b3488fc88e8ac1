"""``main.py demo``: a Gradio app to see a checkpoint's clusters on an uploaded image or point cloud.

Gradio is the optional extra ``demo`` (``pip install -e ".[demo]"``) and is imported only here. The app
binds to 127.0.0.1 unless told otherwise, refuses uploads over a size limit (Gradio's own limit and a
check here), lists and reads only ``*.pt`` files inside the chosen checkpoint folder (names are resolved
and checked, so ``..`` or symbolic links cannot lead out of it) and reports bad uploads in the page. The
folder is scanned again whenever the checkpoint list is opened or "rescan" is pressed, so checkpoints
written after start-up (a run still training) appear.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import IMAGE_EXTENSIONS
from ..hub import pretrained_entry
from .inputs import POINT_EXTENSIONS
from .loading import VizModel, load_checkpoint_model, load_pretrained_model
from .visualize import visualize

UPLOAD_TYPES = [*IMAGE_EXTENSIONS, *POINT_EXTENSIONS]


class CheckpointFolder:
    """The ``*.pt`` files under one folder, addressed by their path relative to it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ValueError(
                f"--checkpoints {root} is not a folder; point it at a run folder of `main.py train`"
            )

    def names(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*.pt")
            if p.is_file() and p.resolve().is_relative_to(self.root)
        )

    def path(self, name: str) -> Path:
        """The file ``name`` stands for, only if it is one of :meth:`names` (so inside the folder)."""
        path = (self.root / str(name)).resolve()
        if not path.is_relative_to(self.root) or name not in self.names():
            raise ValueError(f"checkpoint {name!r} is not a *.pt file in {self.root}; pick one from the list")
        return path


def checkpoint_choices(
    folder: CheckpointFolder, current: str | None, published: Sequence[str] = ()
) -> tuple[list[str], str | None]:
    """The ``published`` names and the folder's checkpoints now, and which to select: ``current`` while it
    is still there."""
    names = [*published, *folder.names()]
    return names, current if current in names else (names[0] if names else None)


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    import gradio as gr

    return gr


def build_app(folder: CheckpointFolder, max_upload_mb: float, pretrained: Sequence[str] = ()) -> Any:
    """The Gradio Blocks app (not launched). ``pretrained``: published checkpoints (``model.tag``, see
    ``pointcoc.list_pretrained()``) offered beside the folder's, downloaded on first use."""
    gr = _gradio()
    published = [pretrained_entry(name).name for name in pretrained]  # a typo is refused before serving
    names, first = checkpoint_choices(folder, None, published)
    empty = (
        f"no *.pt checkpoints under {folder.root} yet: train one there (`main.py train --out DIR`), rescan"
    )
    limit = int(max_upload_mb * 2**20)
    html_dir = Path(tempfile.mkdtemp(prefix="pointcoc-demo-"))

    @functools.lru_cache(maxsize=2)
    def model(name: str) -> VizModel:
        if name in published:
            return load_pretrained_model(name)
        return load_checkpoint_model(folder.path(name))

    def rescan(current: str | None):
        choices, value = checkpoint_choices(folder, current, published)
        if not choices:
            gr.Warning(empty)
        return gr.update(choices=choices, value=value)

    def show(name: str, upload: str | None, *choices: float | None):
        # an emptied number field arrives as None: it means the field's default
        index, stage, block, head, alpha = (
            d if v is None else v for v, d in zip(choices, (0, 0, -1, 0, 0.5))
        )
        try:
            if not name:
                raise ValueError(empty)
            if not upload:
                raise ValueError("upload an image or a point-cloud file first")
            path = Path(upload)
            if path.stat().st_size > limit:
                raise ValueError(f"{path.name} is larger than the {max_upload_mb:g} MB upload limit")
            h5_index = int(index) if path.suffix.lower() in (".h5", ".hdf5") else None
            block_index = None if block < 0 else int(block)
            result = visualize(model(name), path, int(stage), block_index, int(head), float(alpha), h5_index)
        except (ValueError, OSError) as exc:  # bad uploads and choices: told in the page, the app goes on
            message = str(exc).replace(str(upload), Path(upload).name) if upload else str(exc)
            gr.Warning(message)  # the upload's name, not where the server keeps it
            return None, None, f"**error:** {message}", None
        view = None
        if result.layers:
            view = html_dir / f"{path.stem}-clusters.html"
            view.write_text(result.html())
        predictions = dict(result.predictions) or None
        return np.ascontiguousarray(result.picture), predictions, result.summary, str(view) if view else None

    with gr.Blocks(title="pointcoc clusters") as app:
        gr.Markdown(
            "## Context clusters\nPick a checkpoint and upload an image or a point cloud "
            f"({', '.join(UPLOAD_TYPES)}; at most {max_upload_mb:g} MB) to see which points each center "
            "gathers."
        )
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    label = f"checkpoint in {folder.root}"
                    checkpoint = gr.Dropdown(names, value=first, label=label, elem_id="checkpoint", scale=4)
                    rescan_button = gr.Button("rescan", elem_id="rescan", scale=1)
                upload = gr.File(
                    label="image or point cloud", file_types=UPLOAD_TYPES, type="filepath", elem_id="upload"
                )
                index = gr.Number(0, precision=0, minimum=0, label="sample index (.h5 files)")
                with gr.Row():
                    stage = gr.Number(0, precision=0, minimum=0, label="stage", elem_id="stage")
                    block = gr.Number(-1, precision=0, minimum=-1, label="block (-1: last)", elem_id="block")
                    head = gr.Number(0, precision=0, minimum=0, label="head", elem_id="head")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="alpha (images)", elem_id="alpha")
                run = gr.Button("Show clusters", variant="primary", elem_id="run")
            with gr.Column():
                picture = gr.Image(label="clusters", format="png", interactive=False, elem_id="clusters")
                predictions = gr.Label(num_top_classes=5, label="predictions", elem_id="predictions")
                status = gr.Markdown("" if names else empty, elem_id="status")
                view = gr.File(label="interactive 3D view (point clouds)", elem_id="view3d")
        checkpoint.focus(rescan, [checkpoint], [checkpoint])
        rescan_button.click(rescan, [checkpoint], [checkpoint])
        run.click(
            show, [checkpoint, upload, index, stage, block, head, alpha], [picture, predictions, status, view]
        )
    return app


def launch(
    checkpoints: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = 20.0,
    pretrained: Sequence[str] = (),
) -> None:
    """Serve the app until interrupted."""
    app = build_app(CheckpointFolder(checkpoints), max_upload_mb, pretrained)
    gr = _gradio()
    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: works offline
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=int(max_upload_mb * 2**20),
        show_error=True,
        theme=theme,
        footer_links=[],
    )
