"""The fast-path switch, the one piece of state of `keras_norms.functional`.

With the TensorFlow backend, batch norm runs TensorFlow's fused kernel and the
other norms closed-form gradients; with JAX, batch, layer and RMS norm
closed-form gradients; with PyTorch, batch, group, instance and layer norm
PyTorch's native kernels and RMS norm a closed-form gradient
(`keras_norms.kernels`). The `keras.ops` math of each
function is the plain path, for every backend. Both compute the same values
to float32 rounding.

`use_fast_paths` sets the switch, `fast_paths_enabled` reads it, and each
function with a fast path asks `fast_path_backend(x)` which backend's kernel
to import and call for its input: ``"tensorflow"``, ``"jax"``, ``"torch"``, or
None for the plain path. The switch is read when a function is traced.
"""

from __future__ import annotations

import contextlib
import os

from keras import backend

_FAST_PATHS_VARIABLE = "KERAS_NORMS_FAST_PATHS"
_fast_paths = os.environ.get(_FAST_PATHS_VARIABLE, "1").strip().lower() not in ("0", "false", "off", "no")


@contextlib.contextmanager
def use_fast_paths(enabled: bool = True):
    """Turns the fast paths (TensorFlow, JAX and PyTorch) on or off inside the block (process-wide).

    A context manager: the previous setting comes back when the block exits,
    also when it raises. The setting is read when a function is traced: a
    `tf.function` or `jax.jit` function (a compiled Keras model) keeps the path
    it was traced with; eager PyTorch reads it at every call. The environment
    variable ``KERAS_NORMS_FAST_PATHS=0`` turns the fast paths off by default.
    Both paths compute the same values to float32 rounding, so
    switching them off is for comparing and debugging, not for accuracy.

    Args:
        enabled: `True` to take the fast paths where the backend has them,
            `False` to run the plain `keras.ops` math.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
        >>> with F.use_fast_paths(False):
        ...     plain = F.group_norm(x, groups=4)
        >>> bool(np.allclose(plain, F.group_norm(x, groups=4), atol=1e-5))
        True
    """
    global _fast_paths
    previous, _fast_paths = _fast_paths, bool(enabled)
    try:
        yield
    finally:
        _fast_paths = previous


def fast_paths_enabled() -> bool:
    """Whether the functions here take the fast paths (TensorFlow, JAX or PyTorch backend, not switched off).

    The fast paths are switched off by `use_fast_paths(False)` or by the
    environment variable ``KERAS_NORMS_FAST_PATHS=0``. Even when they are on,
    float64 inputs, and inputs a fast path does not cover, take the plain
    `keras.ops` path.

    Returns:
        `True` on the TensorFlow, JAX and PyTorch backends unless the fast
        paths are switched off; `False` on any other backend (OpenVINO).

    Examples:
        >>> from keras_norms import functional as F
        >>> with F.use_fast_paths(False):
        ...     F.fast_paths_enabled()
        False
    """
    return _fast_paths and backend.backend() in ("tensorflow", "jax", "torch")


def fast_path_backend(x) -> str | None:
    """The backend whose kernel `x` takes: ``"tensorflow"``, ``"jax"``, ``"torch"``, or None (plain path).

    None when the fast paths are switched off or the backend has none, and
    for float64 `x`: the kernels compute in float32. The
    function that asks imports that backend's kernel from
    `keras_norms.kernels` by name, where it calls it.
    """
    if not fast_paths_enabled() or backend.standardize_dtype(x.dtype) == "float64":
        return None
    return backend.backend()
