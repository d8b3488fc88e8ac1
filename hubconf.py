"""torch.hub entry points: every registered model, with ``pretrained=`` as in ``pointcoc.create_model``.

    torch.hub.load("OWNER/pointcoc", "coc_tiny", pretrained="openmixup_in1k")   # from GitHub
    torch.hub.load("/path/to/pointcoc", "pointmlp_coc", source="local", pretrained="best_checkpoint.pth")

``pretrained``: False (random weights), True (the model's default published checkpoint), a tag from
``pointcoc.list_pretrained()`` or the path of a checkpoint file; other keyword arguments go to the model.
"""

from pointcoc import create_model as _create_model
from pointcoc import list_models as _list_models
from pointcoc import list_pretrained as _list_pretrained

dependencies = ["torch", "numpy", "tqdm"]


def _entry_point(name: str):
    def load(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = load.__qualname__ = name
    tags = [n.partition(".")[2] for n in _list_pretrained(f"{name}.*")]
    load.__doc__ = (
        f"pointcoc model {name}; pretrained: False, True, a file path or one of {tags or 'no tags'}"
    )
    return load


for _name in _list_models():
    globals()[_name] = _entry_point(_name)
