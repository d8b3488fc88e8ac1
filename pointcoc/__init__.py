"""pointcoc: Context Clusters (Image as Set of Points, ICLR 2023) for point clouds and images."""

from .hub import create_model, list_pretrained
from .models import list_models

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "list_pretrained"]
