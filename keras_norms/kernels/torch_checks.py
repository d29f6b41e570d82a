"""Run-time value checks on PyTorch: values exist in eager mode, not on the meta device or while compiling."""

from __future__ import annotations

import numpy as np
import torch


def values_known_now(x) -> np.ndarray | None:
    """The values of `x` when it holds them; None on the meta device (Keras' shape inference) or while
    `torch.compile` traces."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    if x.device.type == "meta" or torch.compiler.is_compiling():
        return None
    return x.detach().cpu().numpy()
