"""Build our models from official constructors and load official checkpoints.

``official_model(builder, kwargs, state_dict)`` takes the official class path and constructor
arguments (as in ``../shared/fixtures/official``) and returns the equivalent pointcoc model with the
official weights loaded strictly, in eval mode, taking inputs in the official layout.
"""

from .official import OFFICIAL_BUILDERS, load_official_checkpoint, official_model

__all__ = ["OFFICIAL_BUILDERS", "load_official_checkpoint", "official_model"]
