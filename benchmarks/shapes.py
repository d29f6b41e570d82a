"""The shapes every backend's section measures: the reference shapes and a smaller set.

Images are NHWC with groups=32 (batch, group and instance norm), sequences
`(batch, time, features)` (layer and RMS norm, DyT and Derf). The reference
shapes are a ResNet stage and a BERT-base layer (docs/contributing.md); the
small ones a CIFAR-sized feature map and a short sequence, where fixed costs
per call weigh more.
"""

from __future__ import annotations

SHAPES = {
    "reference": {"images": (32, 56, 56, 128), "sequences": (32, 512, 768)},
    "small": {"images": (16, 32, 32, 64), "sequences": (16, 128, 256)},
}
SEQUENCE_NORMS = ("layer", "rms", "dyt", "derf")


def shapes_for(norm: str, shape_set: str = "reference") -> tuple[int, ...]:
    """The input shape `norm` is measured at in `shape_set` ("reference" or "small")."""
    return SHAPES[shape_set]["sequences" if norm in SEQUENCE_NORMS else "images"]
