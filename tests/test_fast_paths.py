"""The TensorFlow fast paths (keras_norms/kernels/) against the plain keras.ops path and float64.

The contract suite runs both paths on small cases (its numerics tests are
parametrized over them); here are the cases it does not reach: training graphs
(a gradient tape records, so the closed-form gradients and the fused kernel on
rank-4 views of rank 2 and 3 run), the XLA-compiled layer/RMS kernels of large
tensors, half precision in training, inputs with a large mean, empty batches,
statistics that need a gradient, and the switch itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from graph_checks import max_rank, op_tensors

import keras_norms
from keras_norms import functional as F
from keras_norms.kernels import tf_base, tf_example

ROOT = Path(__file__).resolve().parents[1]

# (id, layer factory, input shape, training): configurations whose fast path differs from the
# plain one. Batch norm covers every branch: fused kernel (rank 4, rank 5 viewed as 4, rank 2
# and 3 viewed as 4 under a tape), closed form (channels first, a middle axis), ghost batches.
CASES = [
    ("batch-rank4", lambda: keras_norms.BatchNormalization(momentum=0.5), (4, 3, 5, 6), True),
    ("batch-rank5", lambda: keras_norms.BatchNormalization(momentum=0.5), (3, 2, 3, 4, 5), True),
    ("batch-rank3", lambda: keras_norms.BatchNormalization(momentum=0.5), (4, 7, 6), True),
    ("batch-rank2-noaffine", lambda: keras_norms.BatchNormalization(center=False, scale=False), (12, 6),
     True),
    ("batch-nchw", lambda: keras_norms.BatchNormalization(axis=1, momentum=0.5), (3, 6, 4, 5), True),
    ("batch-axis2", lambda: keras_norms.BatchNormalization(axis=2, momentum=0.5), (3, 4, 6, 5), True),
    ("batch-nchw-rank3", lambda: keras_norms.BatchNormalization(axis=1), (4, 6, 7), True),
    ("batch-virtual", lambda: keras_norms.BatchNormalization(virtual_batch_size=2), (6, 3, 4, 5), True),
    # Large enough for fused statistics per virtual batch / per example (example_standardize).
    ("batch-virtual-sliced", lambda: keras_norms.BatchNormalization(virtual_batch_size=2, momentum=0.5),
     (4, 16, 16, 8), True),
    ("batch-virtual-sliced-rank2", lambda: keras_norms.BatchNormalization(virtual_batch_size=512),
     (1024, 8), True),
    ("batch-renorm", lambda: keras_norms.BatchNormalization(renorm=True, renorm_momentum=0.5), (4, 3, 3, 6),
     True),
    ("batch-frozen", lambda: keras_norms.BatchNormalization(freeze_statistics=True), (4, 3, 3, 6), True),
    ("batch-inference", lambda: keras_norms.BatchNormalization(), (4, 3, 3, 6), False),
    ("batch-small-epsilon", lambda: keras_norms.BatchNormalization(epsilon=1e-6), (4, 3, 3, 6), True),
    ("group-nhwc", lambda: keras_norms.GroupNormalization(groups=3), (3, 4, 5, 6), False),
    ("group-nchw", lambda: keras_norms.GroupNormalization(groups=2, axis=1), (3, 6, 4, 5), False),
    ("group-rank3", lambda: keras_norms.GroupNormalization(groups=2), (3, 7, 6), False),
    ("group-rank5", lambda: keras_norms.GroupNormalization(groups=2, center=False), (2, 3, 2, 4, 6), False),
    # Large enough for fused statistics per example (example_standardize).
    ("group-sliced", lambda: keras_norms.GroupNormalization(groups=4), (3, 16, 16, 16), False),
    ("group-sliced-rank3-noscale", lambda: keras_norms.GroupNormalization(groups=2, scale=False), (2, 512, 8),
     False),
    ("group-sliced-rank5-nocenter", lambda: keras_norms.GroupNormalization(groups=2, center=False),
     (2, 4, 8, 16, 8), False),
    ("dyt-seq", lambda: keras_norms.DynamicTanh(alpha_init_value=0.8), (3, 7, 6), False),
    ("derf-image-nooffset", lambda: keras_norms.DynamicErf(center=False, shift_init_value=0.2), (2, 3, 4, 6),
     False),
    ("instance-nhwc", lambda: keras_norms.InstanceNormalization(), (3, 4, 5, 6), False),
    ("instance-sliced", lambda: keras_norms.InstanceNormalization(), (3, 16, 16, 16), False),
    ("instance-sliced-rank3", lambda: keras_norms.InstanceNormalization(center=False), (2, 512, 8), False),
    ("instance-nchw-noscale", lambda: keras_norms.InstanceNormalization(axis=1, scale=False), (3, 6, 4, 5),
     False),
    ("layer-last", lambda: keras_norms.LayerNormalization(), (3, 5, 8), False),
    ("layer-last-two", lambda: keras_norms.LayerNormalization(axis=[-2, -1], center=False), (3, 5, 8), False),
    ("layer-rank2-noscale", lambda: keras_norms.LayerNormalization(scale=False), (6, 10), False),
    ("layer-middle", lambda: keras_norms.LayerNormalization(axis=1), (3, 5, 8), False),
    ("rms-last", lambda: keras_norms.RMSNormalization(), (3, 5, 8), False),
    ("rms-noscale", lambda: keras_norms.RMSNormalization(scale=False), (6, 10), False),
]


@pytest.fixture(autouse=True)
def _per_example_kernels_on_small_tensors(monkeypatch):
    # Statistics by examples (example_standardize) take examples of 2**17 elements and more; the
    # tests reach them with examples of 2**12.
    monkeypatch.setattr(tf_example, "_EXAMPLE_MIN_ELEMENTS", 1 << 12)


def _randomize(layer, rng):
    for weight in layer.weights:
        if "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, weight.shape)
        elif weight.name == "gamma":
            value = rng.normal(1.0, 0.5, weight.shape)
        else:
            value = rng.normal(0.0, 0.5, weight.shape)
        weight.assign(value.astype("float32"))


def _training_step(layer, x, upstream, training, *, compiled=None):
    """Outputs, gradients (input and trainable weights) and the layer's weights after one call."""

    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=training)
        grads = tape.gradient(outputs, [inputs, *layer.trainable_weights], output_gradients=upstream)
        return outputs, grads

    if compiled == "graph-unknown-batch":  # as model.fit traces its steps
        step = tf.function(step, input_signature=[tf.TensorSpec((None, *x.shape[1:]), x.dtype)])
    elif compiled is not None:
        step = tf.function(step, jit_compile=compiled == "xla")
    outputs, grads = step(tf.constant(x))
    return [np.asarray(outputs), *[np.asarray(g) for g in grads], *[w.numpy() for w in layer.weights]]


def _run(make_layer, shape, training, *, fast, compiled=None, dtype="float32", loc=2.0, scale=3.0):
    rng = np.random.default_rng(0)
    with F.use_fast_paths(fast):
        layer = make_layer()
        layer.build(shape)
        _randomize(layer, rng)
        x = rng.normal(loc, scale, shape).astype(dtype)
        upstream = tf.constant(rng.normal(size=shape), dtype=dtype)
        return _training_step(layer, x, upstream, training, compiled=compiled)


COMPILED = ["eager", "graph", "graph-unknown-batch", "graph-jit-kernels", "graph-jit-kernels-in-chunks",
            "xla"]


@pytest.mark.parametrize("compiled", COMPILED)
@pytest.mark.parametrize(("case_id", "make_layer", "shape", "training"), CASES, ids=[c[0] for c in CASES])
def test_training_matches_plain_path(case_id, make_layer, shape, training, compiled, monkeypatch):
    if compiled.startswith("graph-jit-kernels"):
        # The XLA-compiled kernels that large tensors get in a graph without XLA; in chunks of the
        # fewest examples (2) or rows (1) that they take, so that their loops run.
        monkeypatch.setattr(tf_base, "_COMPILE_MIN_ELEMENTS", 0)
        monkeypatch.setattr(tf_base, "_compiled_functions", {})  # traced anew, with this chunk size
        if compiled.endswith("chunks"):
            monkeypatch.setattr(tf_base, "_CHUNK_BYTES", 1)
        compiled = "graph"
    compiled = None if compiled == "eager" else compiled
    fast = _run(make_layer, shape, training, fast=True, compiled=compiled)
    plain = _run(make_layer, shape, training, fast=False, compiled=compiled)
    for index, (a, b) in enumerate(zip(fast, plain, strict=True)):
        # Both are float32: the weights' gradients are sums over the batch, rounded in another order.
        atol = 2e-5 * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=f"{case_id}: item {index}")


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "graph-unknown-batch"])
@pytest.mark.parametrize("chunk_rows", [None, 5], ids=["one-block", "chunks-of-5-rows"])
@pytest.mark.parametrize("center", [True, False], ids=["layer", "rms"])
def test_compiled_row_kernel_matches_float64(center, chunk_rows, traced, monkeypatch):
    # Large tensors run XLA-compiled forward and backward functions; force them on a small one. Its
    # backward loops over chunks of rows that stay in cache: 24 rows are 4 chunks of 5 and 4 left.
    monkeypatch.setattr(tf_base, "_COMPILE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(tf_base, "_compiled_functions", {})
    if chunk_rows:
        monkeypatch.setattr(tf_base, "_CHUNK_BYTES", 4 * 16 * chunk_rows)
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, (4, 6, 16)).astype("float32")
    upstream = rng.normal(size=x.shape)
    gamma = rng.normal(1.0, 0.5, 16).astype("float32")
    beta = rng.normal(0.0, 0.5, 16).astype("float32")
    inputs = [tf.constant(v) for v in (x, gamma, beta)]

    def step(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            if center:
                outputs = F.layer_norm(inputs[0], inputs[1], inputs[2], epsilon=1e-3)
            else:
                outputs = F.rms_norm(inputs[0], inputs[1], epsilon=1e-3)
        return outputs, tape.gradient(outputs, inputs, output_gradients=tf.constant(upstream, tf.float32))

    if traced:
        step = tf.function(step, input_signature=[tf.TensorSpec((None, 6, 16)), tf.TensorSpec((16,)),
                                                  tf.TensorSpec((16,))])
    outputs, grads = step(*inputs)
    assert tf_base._compiled_functions, "the compiled kernels did not run"

    def reference(x, gamma, beta):
        if center:
            return R.layer_norm(x, gamma, beta, epsilon=1e-3)
        return R.rms_norm(x, gamma, epsilon=1e-3)

    values = [x, gamma, beta]
    np.testing.assert_allclose(np.asarray(outputs), reference(*values), atol=1e-5)
    for index in range(3 if center else 2):
        def perturbed(v, index=index):
            return reference(*[v if i == index else w for i, w in enumerate(values)])

        expected = R.numerical_gradient(perturbed, values[index], upstream)
        np.testing.assert_allclose(np.asarray(grads[index]), expected, atol=1e-5, err_msg=f"input {index}")


@pytest.mark.parametrize("jit_kernels", [False, True], ids=["tf-ops", "jit-kernels"])
def test_group_norm_from_per_example_statistics_matches_float64(jit_kernels, monkeypatch):
    # Statistics pooled from the fused kernel's per-(example, channel) moments, the law of total
    # variance, and the per-(example, channel) sums of its inference-mode gradient.
    if jit_kernels:
        monkeypatch.setattr(tf_base, "_COMPILE_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, (2, 8, 8, 64)).astype("float32")
    x[1, ..., :16] *= 20.0  # groups whose channels have different means and spreads
    x[1, ..., 16:32] += np.linspace(-40.0, 40.0, 16, dtype="float32")
    upstream = rng.normal(size=x.shape)
    gamma = rng.normal(1.0, 0.5, 64).astype("float32")
    beta = rng.normal(0.0, 0.5, 64).astype("float32")
    inputs = [tf.constant(v) for v in (x, gamma, beta)]

    @tf.function
    def step(x, gamma, beta):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            outputs = F.group_norm(x, 8, gamma, beta, epsilon=1e-3)
        return outputs, tape.gradient(outputs, [x, gamma, beta], output_gradients=tf.constant(upstream,
                                                                                              tf.float32))

    outputs, grads = step(*inputs)
    ops = [op.type for op in step.get_concrete_function(*inputs).graph.get_operations()]
    assert ops.count("FusedBatchNormV2") == 2, "the per-example statistics did not run"
    values = [x, gamma, beta]

    def reference(x, gamma, beta):
        return R.group_norm(x, 8, gamma, beta, epsilon=1e-3)

    np.testing.assert_allclose(np.asarray(outputs), reference(*values), atol=1e-5)
    for index in range(3):
        def perturbed(v, index=index):
            return reference(*[v if i == index else w for i, w in enumerate(values)])

        expected = R.numerical_gradient(perturbed, values[index], upstream)
        atol = 1e-5 * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(np.asarray(grads[index]), expected, atol=atol, err_msg=f"input {index}")


LARGE_MEAN_CASES = {
    "batch-rank4": (lambda: keras_norms.BatchNormalization(), lambda x: R.batch_norm_train(x), True),
    "batch-rank3": (lambda: keras_norms.BatchNormalization(), lambda x: R.batch_norm_train(x), True),
    "group": (lambda: keras_norms.GroupNormalization(groups=4), lambda x: R.group_norm(x, 4), False),
    "group-sliced": (lambda: keras_norms.GroupNormalization(groups=4), lambda x: R.group_norm(x, 4), False),
    "instance": (lambda: keras_norms.InstanceNormalization(), R.instance_norm, False),
    "layer": (lambda: keras_norms.LayerNormalization(), R.layer_norm, False),
}


@pytest.mark.parametrize("compiled", ["graph", "xla"])
@pytest.mark.parametrize("name", list(LARGE_MEAN_CASES))
def test_training_kernels_are_accurate_for_inputs_with_a_large_mean(name, compiled, monkeypatch):
    monkeypatch.setattr(tf_base, "_COMPILE_MIN_ELEMENTS", 0)
    make_layer, reference, training = LARGE_MEAN_CASES[name]
    shape = {"batch-rank3": (4, 36, 16), "group-sliced": (2, 16, 16, 16)}.get(name, (4, 6, 6, 16))
    x = (1e4 + np.random.default_rng(2).normal(size=shape)).astype("float32")
    layer = make_layer()

    @tf.function(jit_compile=compiled == "xla")
    def forward(inputs):
        with tf.GradientTape() as tape:  # the training kernels
            tape.watch(inputs)
            outputs = layer(inputs, training=training)
        return outputs, tape.gradient(outputs, inputs)

    outputs, grads = forward(tf.constant(x))
    np.testing.assert_allclose(np.asarray(outputs), reference(x), atol=1e-2, rtol=0)
    assert np.all(np.isfinite(np.asarray(grads)))


HALF_CASES = [c for c in CASES if c[0] in ("batch-rank4", "batch-rank3", "batch-nchw", "batch-virtual",
                                            "batch-virtual-sliced", "group-nhwc", "group-sliced",
                                            "instance-sliced",
                                            "layer-last", "rms-last")]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("case_id", "make_layer", "shape", "training"), HALF_CASES,
                         ids=[c[0] for c in HALF_CASES])
def test_half_precision_training_is_finite_and_close(case_id, make_layer, shape, training, dtype):
    keras.mixed_precision.set_global_policy(f"mixed_{dtype}")
    fast = _run(make_layer, shape, training, fast=True, compiled="graph", dtype=dtype, loc=1e4, scale=100.0)
    plain = _run(make_layer, shape, training, fast=False, compiled="graph", dtype=dtype, loc=1e4, scale=100.0)
    assert fast[0].dtype == dtype
    for index, (a, b) in enumerate(zip(fast, plain, strict=True)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.all(np.isfinite(a)), f"{case_id}: inf/NaN in item {index}"
        # Half-precision outputs and input gradients: within a few roundings of each other.
        np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-2 * max(1.0, float(np.abs(b).max())),
                                   err_msg=f"{case_id}: item {index}")


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (0, 5, 3)], ids=["rank4", "rank3"])
def test_empty_batch_with_a_tape_leaves_statistics_unchanged(shape, mode):
    layer = keras_norms.BatchNormalization(momentum=0.5)
    layer(np.random.default_rng(3).normal(size=(2, *shape[1:])).astype("float32"), training=True)
    before = [v.numpy().copy() for v in layer.non_trainable_weights]

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
        return outputs, tape.gradient(outputs, x)

    if mode == "graph":
        step = tf.function(step, input_signature=[tf.TensorSpec((None, *shape[1:]))])
    outputs, grads = step(tf.zeros(shape))
    assert tuple(outputs.shape) == shape and tuple(grads.shape) == shape
    for old, weight in zip(before, layer.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), old, err_msg=weight.name)


@pytest.mark.parametrize(
    "make_layer",
    [lambda: keras_norms.GroupNormalization(groups=4), keras_norms.InstanceNormalization,
     lambda: keras_norms.BatchNormalization(virtual_batch_size=2)],
    ids=["group", "instance", "ghost-batch"],
)
def test_statistics_by_examples_loop_over_a_batch_of_unknown_size(make_layer):
    # Traced for any batch size, the per-example kernels run in a loop; an empty batch runs it no times.
    layer = make_layer()
    layer.build((None, 16, 16, 16))

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 16))])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
        return outputs, tape.gradient(outputs, x)

    ops = op_tensors(step.get_concrete_function().graph)
    assert "While" in {t.op_type for t in ops} or "StatelessWhile" in {t.op_type for t in ops}
    assert "FusedBatchNormV2" in {t.op_type for t in ops}
    for batch in (0, 4):
        x = np.random.default_rng(batch).normal(2.0, 3.0, (batch, 16, 16, 16)).astype("float32")
        outputs, grads = step(tf.constant(x))
        assert outputs.shape == x.shape and grads.shape == x.shape
        assert np.all(np.isfinite(grads.numpy()))
        if not batch:
            continue
        if isinstance(layer, keras_norms.BatchNormalization):  # batch norm of each virtual batch of 2
            expected = np.concatenate([R.batch_norm_train(x[i:i + 2]) for i in range(0, batch, 2)])
        else:
            expected = R.group_norm(x, 4 if type(layer) is keras_norms.GroupNormalization else -1)
        np.testing.assert_allclose(outputs.numpy(), expected, atol=1e-5)


def test_batch_norm_with_computed_statistics_differentiates_through_them():
    # The fused inference kernel has no gradient for its statistics: it must not take tensors
    # that need one (only variables, or no tape at all).
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(4, 3, 3, 5)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(4, 3, 3, 5)).astype("float32"))
    results = {}
    for fast in (True, False):
        with F.use_fast_paths(fast), tf.GradientTape() as tape:
            tape.watch(x)
            mean, variance = F.moments(x, (0, 1, 2))
            outputs = F.batch_norm(x, mean * 0.5, variance + 1.0, axis=-1, epsilon=1e-3)
        results[fast] = tape.gradient(outputs, x, output_gradients=upstream)
    np.testing.assert_allclose(results[True], results[False], rtol=1e-5, atol=1e-5)


def test_training_graphs_grow_rank_to_four_at_most_and_inference_graphs_never():
    layer = keras_norms.BatchNormalization()
    layer.build((6, 5))

    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
        return tape.gradient(outputs, x)

    spec = [tf.TensorSpec((6, 5))]
    training_graph = tf.function(train, input_signature=spec).get_concrete_function().graph
    assert "FusedBatchNormV2" in {t.op_type for t in op_tensors(training_graph)}
    assert max_rank(training_graph) == 4
    inference_graph = tf.function(lambda x: layer(x, training=True), input_signature=spec)
    assert max_rank(inference_graph.get_concrete_function().graph) == 2


def test_switch_turns_the_fast_paths_off_and_restores_them():
    assert F.fast_paths_enabled()
    with F.use_fast_paths(False):
        assert not F.fast_paths_enabled()
        with F.use_fast_paths(True):
            assert F.fast_paths_enabled()
        assert not F.fast_paths_enabled()
    assert F.fast_paths_enabled()
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 4, 4, 8)).astype("float32"))

    def training_ops(fast):
        def train(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = F.group_norm(inputs, 4)
            return tape.gradient(outputs, inputs)

        with F.use_fast_paths(fast):
            return {t.op_type for t in op_tensors(tf.function(train).get_concrete_function(x).graph)}

    assert "IdentityN" in training_ops(True)  # the closed-form (custom) gradient
    assert "IdentityN" not in training_ops(False)


def test_environment_variable_turns_the_fast_paths_off():
    script = textwrap.dedent(
        """
        from keras_norms import functional as F
        print(F.fast_paths_enabled())
        """
    )
    env = {"KERAS_NORMS_FAST_PATHS": "0", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    ("make_layer", "shape", "training", "slices"),
    [
        (keras_norms.InstanceNormalization, (3, 16, 16, 16), False, 3),
        (lambda: keras_norms.BatchNormalization(virtual_batch_size=2), (4, 16, 16, 8), True, 2),
        (lambda: keras_norms.GroupNormalization(groups=4), (3, 16, 16, 16), False, 3),
        (lambda: keras_norms.GroupNormalization(groups=2), (2, 512, 8), False, 2),
    ],
    ids=["instance", "ghost-batch", "group", "group-rank3"],
)
def test_sliced_norms_run_the_fused_kernel_and_its_gradient_per_slice(make_layer, shape, training, slices):
    layer = make_layer()
    layer.build(shape)

    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=training)
        return tape.gradient(outputs, x)

    graph = tf.function(train, input_signature=[tf.TensorSpec(shape)]).get_concrete_function().graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("FusedBatchNormV2") == slices
    assert types.count("FusedBatchNormGradV2") == slices
    assert len(shape) <= max_rank(graph) <= max(len(shape), 4)  # a training graph grows to rank 4 at most


@pytest.mark.parametrize("dtype, kernel", [("bfloat16", "FusedBatchNormV2"), ("float16", "FusedBatchNorm")])
def test_half_precision_inference_batch_norm(dtype, kernel):
    # bfloat16 is read and written by the kernel itself, with no cast over the tensor; float16 runs in
    # float32 in the kernel the TFLite converter takes (TFLite cannot convert V2).
    rng = np.random.default_rng(6)
    x = rng.normal(1e3, 50.0, (4, 6, 6, 8))
    mean, variance = rng.normal(1e3, 5.0, 8), rng.uniform(1e3, 4e3, 8)
    gamma, beta = rng.normal(1.0, 0.5, 8), rng.normal(0.0, 0.5, 8)
    statistics = [tf.constant(v, tf.float32) for v in (mean, variance, gamma, beta)]

    @tf.function
    def infer(inputs):
        return F.batch_norm(inputs, *statistics, epsilon=1e-3, dtype=dtype)

    inputs = tf.constant(x, dtype)
    outputs = infer(inputs)
    graph = infer.get_concrete_function(inputs).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count(kernel) == 1
    full_size_casts = [op for op in graph.get_operations()
                       if op.type == "Cast" and op.outputs[0].shape.num_elements() == x.size]
    assert len(full_size_casts) == (0 if dtype == "bfloat16" else 2)
    assert outputs.dtype == dtype
    rounded = np.asarray(tf.cast(inputs, tf.float64))  # the input as the layer sees it
    expected = R.batch_norm(rounded, mean, variance, gamma, beta, epsilon=1e-3)
    tolerance = 2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10  # one rounding of the output
    np.testing.assert_allclose(np.asarray(tf.cast(outputs, tf.float64)), expected,
                               atol=tolerance * np.abs(expected).max())
