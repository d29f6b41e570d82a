"""PyTorch contenders, in a process of their own: `KERAS_BACKEND` is read once, when Keras is imported.

`python -m benchmarks` starts this module with ``KERAS_BACKEND=torch`` and
reads one JSON row per line from it. Each row interleaves keras-norms (fast
paths, and the plain `keras.ops` path), the Keras built-in layer on PyTorch,
`keras_norms.functional` called directly (our kernels without Keras'
`Layer.__call__`), and `torch.nn.functional` called directly on the same
tensor (channels-last images as a `torch.channels_last` view, as a PyTorch user
would hold them).
Steps run eagerly, Keras' default on PyTorch: "forward" and "inference" call
the layer with `training=True` / `False` under `torch.no_grad()`, "train"
returns the output and the gradients with respect to the input and every
trainable weight for a fixed upstream gradient.
"""

from __future__ import annotations

EPSILONS = {"batch": 1e-3, "group": 1e-3, "instance": 1e-3, "layer": 1e-3, "rms": 1e-6}


def _norms():
    import keras

    import keras_norms

    return {
        "batch": (keras_norms.BatchNormalization, keras.layers.BatchNormalization),
        "group": (lambda **kw: keras_norms.GroupNormalization(groups=32, **kw),
                  lambda **kw: keras.layers.GroupNormalization(groups=32, **kw)),
        # Keras has no instance norm layer; its group norm with one channel per group is one.
        "instance": (keras_norms.InstanceNormalization,
                     lambda **kw: keras.layers.GroupNormalization(groups=-1, **kw)),
        "layer": (keras_norms.LayerNormalization, keras.layers.LayerNormalization),
        "rms": (keras_norms.RMSNormalization, keras.layers.RMSNormalization),
    }


def _inputs(shape, dtype: str, mode: str):
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    x, upstream = (torch.tensor(rng.normal(size=shape).astype("float32")) for _ in range(2))
    if dtype == "bfloat16":
        x = x.to(torch.bfloat16)
    return x.requires_grad_(mode == "train"), upstream


def layer_step(make_layer, shape, *, mode: str, dtype: str, fast: bool = True):
    """An eager forward or training step of a new Keras layer, as a thunk."""
    import torch

    from keras_norms import functional as F

    layer = make_layer(dtype="mixed_bfloat16" if dtype == "bfloat16" else "float32")
    layer.build(shape)
    x, upstream = _inputs(shape, dtype, mode)
    weights = [w.value for w in layer.trainable_weights]

    def run():
        with F.use_fast_paths(fast):
            if mode != "train":
                with torch.no_grad():
                    return layer(x, training=mode == "forward")
            outputs = layer(x, training=True)
            return outputs, torch.autograd.grad(outputs, [x, *weights], upstream.to(outputs.dtype))
    return run


#: `keras_norms.functional` called directly with a layer's weights and result dtype: what our kernels
#: cost without Keras' `Layer.__call__` (which Keras' own layers pay too), beside `torch.nn.functional`.
_FUNCTIONAL = {
    "batch": lambda F, layer, x, mode: (
        F.batch_norm(x, layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta, epsilon=1e-3,
                     dtype=layer.compute_dtype)
        if mode == "inference"
        else F.batch_norm_train(x, layer.gamma, layer.beta, epsilon=1e-3, dtype=layer.compute_dtype)[0]),
    "group": lambda F, layer, x, mode: F.group_norm(x, 32, layer.gamma, layer.beta, epsilon=1e-3,
                                                    dtype=layer.compute_dtype),
    "instance": lambda F, layer, x, mode: F.group_norm(x, -1, layer.gamma, layer.beta, epsilon=1e-3,
                                                       dtype=layer.compute_dtype),
    "layer": lambda F, layer, x, mode: F.layer_norm(x, layer.gamma, layer.beta, epsilon=1e-3,
                                                    dtype=layer.compute_dtype),
    "rms": lambda F, layer, x, mode: F.rms_norm(x, layer.gamma, epsilon=1e-6, dtype=layer.compute_dtype),
}


def ours_functional_step(norm: str, make_layer, shape, *, mode: str, dtype: str):
    """The step with `keras_norms.functional` called directly, on a built layer's weights."""
    import torch

    from keras_norms import functional as F

    layer = make_layer(dtype="mixed_bfloat16" if dtype == "bfloat16" else "float32")
    layer.build(shape)
    x, upstream = _inputs(shape, dtype, mode)
    weights = [w.value for w in layer.trainable_weights]
    function = _FUNCTIONAL[norm]

    def run():
        if mode != "train":
            with torch.no_grad():
                return function(F, layer, x, mode)
        outputs = function(F, layer, x, mode)
        return outputs, torch.autograd.grad(outputs, [x, *weights], upstream.to(outputs.dtype))
    return run


def functional_step(norm: str, shape, *, mode: str, dtype: str, groups: int):
    """The same step with `torch.nn.functional` on the same tensor, parameters float32 (mixed precision)."""
    import torch
    import torch.nn.functional as TF

    x, upstream = _inputs(shape, dtype, mode)
    channels = shape[-1]
    images = len(shape) == 4
    weight = torch.ones(channels, requires_grad=mode == "train")
    bias = torch.zeros(channels, requires_grad=mode == "train")
    # F.rms_norm wants its weight in the input's dtype.
    rms_weight = weight.detach().to(x.dtype).requires_grad_(mode == "train")
    running_mean, running_var = torch.zeros(channels), torch.ones(channels)
    epsilon = EPSILONS[norm]

    def forward(inputs):
        if images:
            inputs = inputs.permute(0, 3, 1, 2)  # channels-last memory, the NCHW shape torch's kernels take
        if norm == "batch":
            outputs = TF.batch_norm(inputs, running_mean, running_var, weight, bias,
                                    training=mode != "inference", momentum=0.01, eps=epsilon)
        elif norm in ("group", "instance"):
            outputs = TF.group_norm(inputs, channels if norm == "instance" else groups, weight, bias, epsilon)
        elif norm == "layer":
            outputs = TF.layer_norm(inputs, (channels,), weight, bias, epsilon)
        else:
            outputs = TF.rms_norm(inputs, (channels,), rms_weight, epsilon)
        return outputs.permute(0, 2, 3, 1) if images else outputs

    params = [rms_weight] if norm == "rms" else [weight, bias]

    def run():
        if mode != "train":
            with torch.no_grad():
                return forward(x)
        outputs = forward(x)
        return outputs, torch.autograd.grad(outputs, [x, *params], upstream.to(outputs.dtype))
    return run


def contenders(name: str, shape, *, mode: str, dtype: str, plain: bool) -> dict:
    """One row's contenders: keras-norms (fast, plain if asked, and its functional API), Keras' built-in
    and `torch.nn.functional`."""
    ours, built_in = _norms()[name]
    common = {"mode": mode, "dtype": dtype}
    found = {"keras-norms": layer_step(ours, shape, **common)}
    if plain:
        found["keras-norms plain"] = layer_step(ours, shape, **common, fast=False)
    found["keras"] = layer_step(built_in, shape, **common)
    found["keras-norms functional"] = ours_functional_step(name, ours, shape, **common)
    found["torch"] = functional_step(name, shape, **common, groups=32)
    return found


def main(argv=None) -> None:
    import torch

    from benchmarks import backend_rows

    backend_rows.main("torch", contenders, argv, version=torch.__version__, xla=False)


if __name__ == "__main__":
    main()
