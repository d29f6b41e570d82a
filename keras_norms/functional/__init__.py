"""The normalization math, written once and shared by every layer.

Every function computes its statistics and the normalization in float32
(float16 and bfloat16 inputs are read as they are and upcast), or in float64
when ``x`` is float64, and returns that dtype: statistics never run in less
than float32. The layers cast the result to their compute dtype. Statistics
are computed in two passes (the mean, then the mean of squared deviations
from it), which stays accurate when the data has a large mean, where
``E[x^2] - E[x]^2`` loses every significant digit.

With the TensorFlow backend, batch, group, instance, layer and RMS norm take
fast paths (keras_norms/kernels/: TensorFlow's fused batch norm kernel,
closed-form gradients) that compute the same values in fewer passes over
memory; with JAX, batch norm in training and layer and RMS norm take a
closed-form gradient; with PyTorch, batch, group, instance and layer norm call
PyTorch's native kernels and RMS norm a closed-form gradient.
`use_fast_paths(False)` runs the plain `keras.ops` math instead.

The package, by concern (every public name is imported here, from):

- `statistics`: `moments`, `normalize`, `broadcast_shape`, the statistics of
  virtual batches.
- `batch_norms`: statistics over the batch: `batch_norm`, `batch_norm_train`,
  `virtual_batch_norm`, `switchable_norm`.
- `example_norms`: statistics within each example: `layer_norm`, `rms_norm`,
  `group_norm`, `filter_response_norm` and `tlu`.
- `conditioning`: per-example parameters from a condition (`linear`,
  `select_rows`, `check_ids`, `modulate`, `resize_nearest`, `conv2d`,
  `condition_parameters`) and the adaptive norms (`adaptive_instance_norm`,
  `modulated_instance_norm`).
- `pointwise`: the norm-free replacements of a norm, element by element
  (`dynamic_tanh`, `dynamic_erf`, and `erf` from TFLite builtin operators
  on TensorFlow), and `layer_scale` for residual branches.
- `reparametrization`: `standardize_kernel`, `kernel_norms`,
  `weight_normalized_kernel`, `convolve`, `convolve_transpose`.
- `fast_paths`: the switch (`use_fast_paths`, `fast_paths_enabled`), the one
  piece of module state.

A function with a fast path asks `fast_paths.fast_path_backend(x)` which
backend's kernel its input takes, imports that kernel by name from
`keras_norms.kernels` in its body (`group_norm`: TensorFlow's
`keras_norms.kernels.tf_channel.group_norm`, PyTorch's
`keras_norms.kernels.torch.group_norm`; JAX has none) and calls it; a
kernel returns None for an input it does not cover, and the function goes on
with the plain `keras.ops` math below the call.

Examples:
    >>> import numpy as np
    >>> from keras_norms import functional as F
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    >>> y = F.group_norm(x, groups=4)
    >>> tuple(y.shape)
    (2, 4, 4, 8)
"""

from __future__ import annotations

from keras_norms.functional.batch_norms import (
    batch_norm,
    batch_norm_train,
    switchable_norm,
    virtual_batch_norm,
)
from keras_norms.functional.conditioning import (
    adaptive_instance_norm,
    check_ids,
    condition_parameters,
    conv2d,
    linear,
    modulate,
    modulated_instance_norm,
    resize_nearest,
    select_rows,
)
from keras_norms.functional.example_norms import filter_response_norm, group_norm, layer_norm, rms_norm, tlu
from keras_norms.functional.fast_paths import fast_paths_enabled, use_fast_paths
from keras_norms.functional.pointwise import dynamic_erf, dynamic_tanh, erf, layer_scale
from keras_norms.functional.reparametrization import (
    convolve,
    convolve_transpose,
    kernel_norms,
    standardize_kernel,
    weight_normalized_kernel,
)
from keras_norms.functional.statistics import (
    broadcast_shape,
    moments,
    normalize,
    ungroup_virtual_batches,
    virtual_batch_moments,
)

__all__ = [
    "adaptive_instance_norm",
    "batch_norm",
    "batch_norm_train",
    "broadcast_shape",
    "check_ids",
    "condition_parameters",
    "conv2d",
    "convolve",
    "convolve_transpose",
    "dynamic_erf",
    "dynamic_tanh",
    "erf",
    "fast_paths_enabled",
    "filter_response_norm",
    "group_norm",
    "kernel_norms",
    "layer_scale",
    "layer_norm",
    "linear",
    "modulate",
    "modulated_instance_norm",
    "moments",
    "normalize",
    "resize_nearest",
    "rms_norm",
    "select_rows",
    "standardize_kernel",
    "switchable_norm",
    "tlu",
    "ungroup_virtual_batches",
    "use_fast_paths",
    "virtual_batch_moments",
    "virtual_batch_norm",
    "weight_normalized_kernel",
]
