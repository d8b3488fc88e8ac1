"""Published checkpoints: the zoo (:func:`list_pretrained`), downloads into a cache, and
``create_model(name, pretrained=True | "tag" | path)``."""

from .download import DownloadError, checkpoint_dir, download_file
from .pretrained import checkpoint_file, create_model
from .zoo import ENTRIES, PretrainedEntry, list_pretrained, pretrained_entry

__all__ = [
    "ENTRIES",
    "DownloadError",
    "PretrainedEntry",
    "checkpoint_dir",
    "checkpoint_file",
    "create_model",
    "download_file",
    "list_pretrained",
    "pretrained_entry",
]
