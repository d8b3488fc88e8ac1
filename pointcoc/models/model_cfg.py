"""What a model declares about itself (timm's ``pretrained_cfg``): consumers ask the model, never its class.

Every model built here carries ``model.model_cfg``, a frozen :class:`ModelCfg`. The engine, visualisation,
benchmarks and the demo read the input kind, size and normalisation from it; a training run stores it in its
checkpoint, with the values the run's data actually used (``dataclasses.replace``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# The cluster normaliser: ``similarity`` divides by sum_n s_n + 1 (Context-Cluster since May 2023),
# ``count`` by count_m + 1 (the March-2023 releases and openmixup); defined with the operator.
from ..cluster.op import Aggregation, check_aggregation

InputKind = Literal["points", "image"]
INPUT_KINDS = ("points", "image")


@dataclass(frozen=True)
class ModelCfg:
    """A model's declared interface.

    ``input_size`` is ``(num_points, 3)`` for point models and ``(3, H, W)`` for image models;
    ``mean``/``std`` normalise images (``None`` for points, which are centred and scaled into the unit sphere
    instead).
    ``crop_pct``/``interpolation`` describe the image eval transform (resize the shorter side to
    ``floor(H / crop_pct)``, centre-crop ``H``). ``has_clusters``: ``capture_clusters()`` records something to
    draw. ``pretrained`` names the zoo tags that fit this architecture.
    """

    architecture: str
    family: str
    input_kind: InputKind
    num_classes: int
    input_size: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    aggregation: Aggregation = "similarity"
    has_clusters: bool = True
    pretrained: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        check_aggregation(self.aggregation)

    @property
    def is_points(self) -> bool:
        return self.input_kind == "points"

    @property
    def num_points(self) -> int | None:
        """Points per cloud the model was built for (point models), else ``None``."""
        return self.input_size[0] if self.is_points else None

    @property
    def image_size(self) -> int | None:
        """Side of the square input (image models), else ``None``."""
        return self.input_size[-1] if not self.is_points else None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (lists, not tuples), so a checkpoint holding it loads with weights_only."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCfg:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
