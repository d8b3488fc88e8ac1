"""Cluster visualisation: which points each center gathers, for images and point clouds.

loading.py (model from a checkpoint or a name), inputs.py (image and point files), image_clusters.py and
point_clusters.py (pictures from the models' captured assignments), point_png.py / point_html.py (point
renderers), visualize.py (one input end to end), tensorboard.py (pictures during training), demo.py (the
Gradio app, optional extra ``demo``). Nothing here recomputes a clustering: it reads what the forward did.
"""

from .loading import VizModel, load_checkpoint_model, load_named_model, load_pretrained_model
from .visualize import Visualization, visualize

__all__ = [
    "Visualization",
    "VizModel",
    "load_checkpoint_model",
    "load_named_model",
    "load_pretrained_model",
    "visualize",
]
