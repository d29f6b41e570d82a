"""Backend-specific fast paths of `keras_norms.functional`, one file per family of statistics.

`keras_norms.functional` is the only caller: each of its functions with a fast
path asks `functional.fast_paths.fast_path_backend(x)` whether the Keras
backend is TensorFlow, JAX or PyTorch with the fast paths on
(`functional.use_fast_paths`), then imports its kernel by name from the module
here that defines it and calls it (`functional.group_norm` calls
`tf_channel.group_norm` or `torch.group_norm`).
The TensorFlow kernels are described here; the JAX ones in
`jax_standardize.py`, the PyTorch ones in `torch.py`. Each computes what the
plain `keras.ops` path computes, to float32 rounding, with fewer passes over
memory: normalization is memory-bound, and in a
TensorFlow graph without XLA every op over a full-size tensor is at least one
pass.

- Batch norm, channels last: TensorFlow's fused kernel and its fused gradient
  (`tf_batch`). Group and instance norm and ghost batch norm (channels last)
  in training take their statistics from the same kernel run on each example
  (or virtual batch) (`tf_example`).
- Everything else (layer and RMS norm, batch norm channels first or under XLA,
  group norms of small examples, channels first or under XLA) is a closed-form
  gradient (`tf.custom_gradient`): backward is the two sums and one expression for dx,
  not the autodiff chain through every op; scale and shift are folded into one
  per-(sample, channel) multiply-add. Sums over an axis that is not the
  innermost are products with a vector of ones (a GEMV is several times faster
  than TensorFlow's column reduction on CPU), and a sum of squares is one
  `EuclideanNorm` reduction.
- The closed forms of large tensors in training run as two XLA-compiled
  functions (forward, backward) even in a graph without XLA: XLA fuses their
  element-wise work, which TensorFlow would run op by op (small tensors take
  TensorFlow ops, which need no compilation). They loop over chunks of
  examples (of rows, for layer and RMS norm's backward) small enough to stay
  in cache between their passes.
- Moments are two passes (the mean, then squared deviations from it), exact
  for a large mean. The one-pass alternative that stays exact (each slice
  shifted by one of its values) was measured: on CPU, XLA runs it no faster.
- When no gradient tape records (inference, export), short forward graphs of
  TFLite builtin ops (and XNNPACK-friendly: no BROADCAST_TO), on `x` itself.

Ranks: graphs traced without a tape (inference, export) never have a tensor
of higher rank than the input. Graphs a tape records (training, never
exported) may view a rank 2 or 3 input as rank 4 for the fused batch norm
kernel, and never go above rank 4, which every runtime accepts.

One file per family:

- `tf_base.py`: what every family shares (tracing context, sizes, the fused
  kernel's acceptance, the XLA-compiled functions and their chunked loop).
- `tf_batch.py`: batch statistics (batch norm, ghost batch norm, cross-replica moments).
- `tf_channel.py`: per-(sample, group of channels) statistics (group and
  instance norm; batch norm where the fused kernel does not apply).
- `tf_row.py`: per-row statistics (layer and RMS norm).
- `tf_example.py`: statistics by examples (the fused kernel run on each example).
- `jax.py`: the JAX kernels (batch norm, layer and RMS norm), named and called
  as the `functional` functions they serve.
- `jax_standardize.py`: standardization over axes with a closed-form gradient
  (`jax.custom_vjp`: batch norm in training, layer and RMS norm).
- `torch.py`: the PyTorch kernels (batch, layer, group and instance norm on
  PyTorch's native kernels, channels-last inputs viewed in the layouts they
  take; RMS norm as a closed-form `torch.autograd.Function`).
- `tf_checks.py`, `jax_checks.py`, `torch_checks.py`: the values of a tensor
  where they exist (not while a graph is traced), for checks such as
  `functional.check_ids`; on TensorFlow also the assertion a graph runs.
- `tf_conv.py`: the shape of an empty batch out of TensorFlow's CPU convolutions.
- `tf_pointwise.py`: the element-wise norms (DyT, Derf): their closed-form
  training kernel, and an erf from TFLite builtin operators (TFLite has none).

A kernel returns `None` for an input it does not cover, and `functional` then
takes the plain path; a norm without a kernel on a backend is simply not
called there. This file imports nothing: the package is imported under
every backend; only its `tf*` modules import TensorFlow, only its `jax*`
modules JAX, only its `torch*` modules PyTorch.
"""
