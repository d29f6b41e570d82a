"""Run-time value checks on JAX: values exist outside `jax.jit` only."""

from __future__ import annotations

import jax
import numpy as np


def values_known_now(x) -> np.ndarray | None:
    """The values of `x` when it holds them, None for a tracer (`jax.jit`, `jax.eval_shape`)."""
    return None if isinstance(x, jax.core.Tracer) else np.asarray(x)
