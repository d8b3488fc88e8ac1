"""Official models and published checkpoints, mapped onto pointcoc.

``official_model(builder, kwargs, state_dict)`` takes the official class path and constructor
arguments (as in ``../shared/fixtures/official``) and returns the equivalent pointcoc model with the
official weights loaded strictly, in eval mode, taking inputs in the official layout.
``load_official_checkpoint(model, path, aggregation=None, use_ema=False)`` loads a checkpoint file in the
layout it was published in (timm, openmixup/mmcv, pointMLP) and sets the model's cluster normaliser.
"""

from .checkpoints import (
    OfficialCheckpoint,
    apply_official_checkpoint,
    convert_to_model,
    load_official_checkpoint,
    read_official_checkpoint,
    set_aggregation,
)
from .official import OFFICIAL_BUILDERS, official_model

__all__ = [
    "OFFICIAL_BUILDERS",
    "OfficialCheckpoint",
    "apply_official_checkpoint",
    "convert_to_model",
    "load_official_checkpoint",
    "official_model",
    "read_official_checkpoint",
    "set_aggregation",
]
