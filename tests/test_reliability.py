"""The reliability battery: what no layer may get wrong, whatever its math.

Run for every registry name (the primary case of tests/layer_cases.py) and every
layer of tests/layer_zoo.py (conditional, adaptive, SPADE, FiLM, weight-standardized
convolution, weight normalization, recurrent cells), on the active Keras backend:
`make test` runs it under TensorFlow with the whole suite, and under JAX (and PyTorch
when installed) in the backend suite. Nothing here is specific to a backend.

- An empty batch, in training and in inference: an output of shape `(0, ...)`, and
  every weight (the moving statistics above all) bit-identical to before and finite.
- A batch of one in training: finite outputs and weights, equal to the float64
  reference of tests/references.py (layers without one here: equal to that example's
  output in a larger batch, where the layer is per example); moving statistics
  updated with that one example's statistics.
- A NaN in example 0 in inference never reaches examples 1..; for registry names it
  reaches exactly the entries of example 0 that the float64 reference says.
- Integer inputs give the float answer on the same values.
- `predict` from several threads at once on one model gives the single-threaded answers.
- A `.keras` file reloads with `safe_mode=True` and gives the same outputs.
- Every constructor argument's invalid values (wrong type, out of range, NaN), derived
  from the constructor's signature by the kind of argument, raise a `TypeError` or
  `ValueError` whose message holds ``name=repr(value)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
import references as R
from layer_cases import spec_for
from layer_zoo import LAYERS

import keras_norms

BACKEND = keras.backend.backend()
NAMES = keras_norms.names()
# One batch size throughout (but for the empty batch and the batch of one): JAX compiles each
# operation once per shape.
BATCH = 4

# ----------------------------------------------------------------------------- the subjects

Reference = Callable[[list, dict, bool], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Subject:
    id: str
    # A new model, and the layer under test inside it.
    make: Callable[[], tuple[keras.Model, keras.layers.Layer]]
    # (inputs of the layer, its weights by name, training) -> float64 output; None: none here.
    reference: Callable[[keras.layers.Layer], Reference | None]
    # In training, an example's output depends on that example alone.
    per_example: bool
    # The channel axis of the moving statistics, for layers that keep them.
    channel_axis: int = -1


def _registry_subject(name: str) -> Subject:
    spec = spec_for(name)
    case = spec.primary
    # The primary case of a layer with batch statistics is a training one: its inference
    # reference is that of the first inference case with the same arguments (momentum aside).
    inference = case
    if case.training:
        same = {k: v for k, v in case.kwargs.items() if k != "momentum"}
        inference = next((c for c in spec.cases if not c.training
                          and {k: v for k, v in c.kwargs.items() if k != "momentum"} == same), None)

    def make():
        layer = keras_norms.get(name, **case.kwargs)
        inputs = keras.Input(case.input_shape[1:])
        return keras.Model(inputs, layer(inputs)), layer

    def reference(layer):
        def call(arrays, weights, training):
            chosen = case if training else inference
            return None if chosen is None else chosen.reference(arrays[0], weights)
        return call

    axis = case.kwargs.get("axis", -1)
    return Subject(name, make, reference, per_example=not case.training,
                   channel_axis=axis if isinstance(axis, int) else -1)


def _zoo_reference(name: str) -> Callable[[keras.layers.Layer], Reference | None]:
    """The float64 reference of a layer of tests/layer_zoo.py (its arguments read from the layer)."""
    def of(layer):
        epsilon = getattr(layer, "epsilon", None)
        if name.startswith("conditional_batch"):
            return lambda a, w, training: R.conditional_batch_norm(a[0], a[1], w, epsilon=epsilon,
                                                                   training=training)
        if name == "conditional_instance":
            return lambda a, w, training: R.conditional_instance_norm(a[0], a[1], w["gamma"], w["beta"],
                                                                      epsilon=epsilon)
        if name == "film":
            return lambda a, w, training: R.film(a[0], a[1], w)
        if name == "spade":
            return lambda a, w, training: R.spade(a[0], a[1], w, norm=layer.param_free_norm,
                                                  epsilon=epsilon, training=training)
        if name == "adain_features":
            return lambda a, w, training: R.adain(a[0], a[1], alpha=layer.alpha, epsilon=epsilon)
        if name == "adain_vector":
            return lambda a, w, training: R.adain_vector(a[0], a[1], w, alpha=layer.alpha, epsilon=epsilon)
        if name == "adaptive_layer":
            return lambda a, w, training: R.adaptive_layer_norm(a[0], a[1], w, epsilon=epsilon,
                                                                activation="silu")
        if name == "adaptive_group":
            return lambda a, w, training: R.adaptive_group_norm(a[0], a[1], w, groups=layer.groups,
                                                                epsilon=epsilon, activation="silu")
        if name == "weight_standardized_conv":
            return lambda a, w, training: R.conv2d_same(a[0], R.standardize_kernel(w["kernel"], epsilon),
                                                        w["bias"])
        return None  # weight normalization and the recurrent cells: compared example by example
    return of


def _zoo_subject(name: str) -> Subject:
    make_layer, build, _ = LAYERS[name]

    def make():
        layer = make_layer()
        return build(layer), layer

    # Batch statistics in training: conditional batch norm and SPADE (batch norm inside); weight
    # normalization's first training call sets g and the bias from the batch (data_init).
    batch_dependent = name.startswith("conditional_batch") or name in ("spade", "weight_normalization")
    return Subject(name, make, _zoo_reference(name), per_example=not batch_dependent)


SUBJECTS = [_registry_subject(n) for n in NAMES] + [_zoo_subject(n) for n in LAYERS]
each_subject = pytest.mark.parametrize("subject", SUBJECTS, ids=lambda s: s.id)

# ----------------------------------------------------------------------------- helpers


def _numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _outputs(value) -> list[np.ndarray]:
    return [_numpy(v) for v in keras.tree.flatten(value)]


def _input_specs(layer):
    """The KerasTensors the layer receives in its model (shapes and dtypes of its inputs)."""
    return list(layer._inbound_nodes[0].input_tensors)


def _arrays(specs, batch: int, rng) -> list[np.ndarray]:
    """Inputs for `specs` with `batch` examples: normal floats; integers (class or style ids) in [0, 3)."""
    arrays = []
    for spec in specs:
        shape = (batch, *spec.shape[1:])
        if "int" in keras.backend.standardize_dtype(spec.dtype):
            arrays.append(rng.integers(0, 3, size=shape).astype(spec.dtype))
        else:
            arrays.append(rng.normal(size=shape).astype("float32"))
    return arrays


def _randomize(layer, rng) -> None:
    """Non-trivial values for the float weights of `layer`, so that a lost or ignored weight shows."""
    for weight in layer.weights:
        dtype = keras.backend.standardize_dtype(weight.dtype)
        if "float" not in dtype:
            continue  # weight normalization's `initialized` flag
        shape = tuple(weight.shape)
        if "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, size=shape)
        elif weight.name in ("gamma", "g"):
            value = rng.normal(1.0, 0.5, size=shape)
        else:
            value = rng.normal(0.0, 0.5, size=shape)
        weight.assign(value.astype(dtype))


def _weights(layer) -> dict[str, np.ndarray]:
    """Every weight of `layer` (its sublayers' too) by path."""
    weights = {w.path: _numpy(w.value).copy() for w in layer.weights}
    assert len(weights) == len(layer.weights), [w.path for w in layer.weights]
    return weights


def _named(layer) -> dict[str, np.ndarray]:
    """The weights of `layer` by name, in float64, as the references take them."""
    return {w.name: _numpy(w.value).astype(np.float64) for w in layer.weights}


def _ready(subject: Subject, seed: int = 0):
    """A new model and its layer with random weights, the layer's input specs, and a generator."""
    keras.utils.set_random_seed(seed)
    model, layer = subject.make()
    rng = np.random.default_rng(seed)
    _randomize(layer, rng)
    return model, layer, _input_specs(layer), rng


def _assert_weights_unchanged_and_finite(layer, before, what):
    for path, value in _weights(layer).items():
        np.testing.assert_array_equal(value, before[path], err_msg=f"{what}: weight {path!r} changed")
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{what}: weight {path!r} is not finite"


def _model_arrays(model, batch, rng):
    arrays = _arrays(model.inputs, batch, rng)
    return arrays if len(arrays) > 1 else arrays[0]


# ----------------------------------------------------------------------------- empty batch, batch of one


@each_subject
def test_empty_batch_gives_an_empty_output_and_leaves_every_weight_as_it_was(subject):
    _, layer, specs, rng = _ready(subject)
    # The shape of one example's output, from a call on a batch in inference (which changes nothing).
    example_shapes = [y.shape[1:] for y in _outputs(layer(*_arrays(specs, BATCH, rng), training=False))]
    before = _weights(layer)
    for training in (False, True):
        outputs = _outputs(layer(*_arrays(specs, 0, rng), training=training))
        assert [y.shape for y in outputs] == [(0, *shape) for shape in example_shapes], f"training={training}"
        _assert_weights_unchanged_and_finite(layer, before, f"{subject.id}, empty batch, training={training}")


@each_subject
def test_batch_of_one_in_training(subject):
    _, layer, specs, rng = _ready(subject)
    many = _arrays(specs, BATCH, rng)
    one = [a[:1] for a in many]
    before = _named(layer)
    outputs = _outputs(layer(*one, training=True))
    for y in outputs:
        assert y.shape[0] == 1 and np.all(np.isfinite(y)), f"{subject.id}: {y}"
    for path, value in _weights(layer).items():
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{subject.id}: weight {path!r} is not finite: {value}"
    after = _named(layer)

    reference = subject.reference(layer)
    expected = None if reference is None else reference(one, before, True)
    if expected is not None:
        np.testing.assert_allclose(outputs[0], expected, atol=1e-5, err_msg=f"{subject.id}: vs float64")
    elif subject.per_example:
        # That example's output in a larger batch.
        np.testing.assert_allclose(outputs[0], _outputs(layer(*many, training=True))[0][:1], atol=1e-5,
                                   err_msg=f"{subject.id}: batch of one vs a larger batch")
    if "moving_mean" in before and hasattr(layer, "momentum") and not getattr(layer, "renorm", False):
        # The moving averages took the one example's statistics (over every axis but the channels').
        mean, variance = R.batch_moments(one[0], subject.channel_axis)
        momentum = layer.momentum
        for name, value in (("moving_mean", mean), ("moving_variance", variance)):
            np.testing.assert_allclose(after[name], momentum * before[name] + (1 - momentum) * value,
                                       rtol=1e-5, atol=1e-6, err_msg=f"{subject.id}: {name}")


# ----------------------------------------------------------------------------- NaN


@each_subject
def test_a_nan_in_one_example_never_reaches_the_others_in_inference(subject):
    _, layer, specs, rng = _ready(subject)
    arrays = _arrays(specs, BATCH, rng)
    clean = _outputs(layer(*arrays, training=False))
    poisoned = [a.copy() for a in arrays]
    for array in poisoned:
        if array.dtype.kind == "f":
            array[0].flat[0] = np.nan  # one entry of example 0, in every float input
    outputs = _outputs(layer(*poisoned, training=False))
    for y, y_clean in zip(outputs, clean, strict=True):
        np.testing.assert_allclose(y[1:], y_clean[1:], rtol=1e-6, atol=1e-6,
                                   err_msg=f"{subject.id}: examples 1.. changed by a NaN in example 0")
        assert np.isnan(y[0]).any(), f"{subject.id}: the NaN of example 0 vanished"
    reference = subject.reference(layer) if subject.id in NAMES else None
    expected = None if reference is None else reference(poisoned, _named(layer), False)
    if expected is not None:
        # Example 0 is NaN exactly where the float64 math makes it NaN, and right elsewhere.
        np.testing.assert_array_equal(np.isnan(outputs[0][0]), np.isnan(expected[0]),
                                      err_msg=f"{subject.id}: where example 0 is NaN")
        finite = ~np.isnan(expected[0])
        np.testing.assert_allclose(outputs[0][0][finite], expected[0][finite], atol=1e-5)


# ----------------------------------------------------------------------------- integer inputs

# The layers that return an integer input as it is, in its dtype: the identity.
KEEPS_INTEGER_DTYPE = {"none"}


@each_subject
def test_integer_inputs_give_the_float_answer(subject):
    _, layer, specs, rng = _ready(subject)
    arrays = _arrays(specs, BATCH, rng)
    integers = rng.integers(-3, 4, size=arrays[0].shape).astype("int32")
    expected = _outputs(layer(integers.astype("float32"), *arrays[1:], training=False))
    outputs = _outputs(layer(integers, *arrays[1:], training=False))
    for y, y_float in zip(outputs, expected, strict=True):
        dtype = "int32" if subject.id in KEEPS_INTEGER_DTYPE else "float32"
        assert y.dtype == dtype, f"{subject.id}: int32 inputs gave {y.dtype}"
        np.testing.assert_allclose(y, y_float, atol=1e-5, err_msg=f"{subject.id}: int32 vs float32 inputs")


# ----------------------------------------------------------------------------- threads, files


def _all_in_one_model() -> keras.Model:
    """One model holding the model of every subject: their inputs side by side, their outputs in order.

    One predict function to build instead of one per subject.
    """
    inputs, outputs = [], []
    for subject in SUBJECTS:
        model, *_ = _ready(subject)
        own = [keras.Input(t.shape[1:], dtype=t.dtype, name=f"{subject.id}_{i}")
               for i, t in enumerate(model.inputs)]
        inputs += own
        outputs.append(model(own if len(own) > 1 else own[0]))
    return keras.Model(inputs, outputs)


def test_empty_batch_in_a_compiled_model():
    # Compiled for a batch of 4, then for an empty one (on TensorFlow: a graph with an unknown batch).
    model = _all_in_one_model()
    rng = np.random.default_rng(1)
    x = _arrays(model.inputs, BATCH, rng)
    expected = model.predict_on_batch(x)
    empty = model.predict_on_batch(_arrays(model.inputs, 0, rng))
    for subject, y, y_full in zip(SUBJECTS, empty, expected, strict=True):
        assert y.shape == (0, *y_full.shape[1:]), f"{subject.id}: {y.shape}"
    for subject, y, y_expected in zip(SUBJECTS, model.predict_on_batch(x), expected, strict=True):
        np.testing.assert_array_equal(y, y_expected, err_msg=f"{subject.id}: after an empty batch")


@pytest.mark.skipif(BACKEND == "jax", reason=(
    "Keras' JAX trainer detaches the values of a model's variables while `predict` runs "
    "(Trainer._purge_model_variables) and reattaches them at its end, so `predict` calls on one model "
    "cannot overlap on JAX: give each thread its own model"))
def test_predict_from_several_threads_gives_the_single_threaded_answers():
    model = _all_in_one_model()
    x = _arrays(model.inputs, BATCH, np.random.default_rng(0))
    expected = model.predict(x, verbose=0)  # also builds the predict function
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.predict(x, verbose=0), range(4)))
    for result in results:
        for subject, y, y_expected in zip(SUBJECTS, result, expected, strict=True):
            np.testing.assert_array_equal(y, y_expected, err_msg=f"{subject.id}: predict in a thread")


@each_subject
def test_keras_file_reloads_in_safe_mode(subject, tmp_path):
    model, _, _, rng = _ready(subject)
    x = _model_arrays(model, BATCH, rng)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    # Inference first (it reads the moving statistics a training call updates, in both models).
    for training in (False, True):
        for y, expected in zip(_outputs(loaded(x, training=training)), _outputs(model(x, training=training)),
                               strict=True):
            np.testing.assert_array_equal(y, expected, err_msg=f"{subject.id}: training={training}")


# ----------------------------------------------------------------------------- invalid arguments

_NAN = math.nan
# Invalid values by kind of argument, with the error each must raise.
INVALID = {
    "bool": [("yes", TypeError), (2, TypeError)],
    "float": [(_NAN, ValueError), (math.inf, ValueError), ("0.5", TypeError)],
    "count": [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("4", TypeError), (_NAN, TypeError)],
    "initializer": [("not_an_initializer", ValueError)],
    "regularizer": [("not_a_regularizer", ValueError)],
    "constraint": [("not_a_constraint", ValueError)],
    "activation": [("not_an_activation", ValueError)],
    "axis": [(_NAN, TypeError), ("1", TypeError)],
    "choice": [("not_a_choice", ValueError)],
    "clipping": [("yes", TypeError), ({"rmax": _NAN}, ValueError), ({"rmax": "3"}, TypeError)],
    "layer": [("not_a_layer", TypeError)],
}
# The counts that take another value on top of the positive ints; none of the values above.
COUNTS = {"groups", "num_classes", "num_styles", "hidden_channels", "kernel_size", "virtual_batch_size",
          "filters", "units"}


def _kind(name: str, parameter: inspect.Parameter) -> str | None:
    """The kind of a constructor argument, from its name and annotation; None if unknown."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else ""
    for suffix in ("initializer", "regularizer", "constraint"):
        if name.endswith(f"_{suffix}"):
            return suffix
    if name in ("activation", "axis", "layer"):
        return name
    if name == "renorm_clipping":
        return "clipping"
    if name in COUNTS:
        return "count"
    if name in ("mode", "param_free_norm"):
        return "choice"
    return {"bool": "bool", "float": "float"}.get(annotation)


def _constructors() -> dict[str, tuple[type, dict]]:
    """Every class under test, with the keyword arguments of a valid instance."""
    classes = {}
    for name in NAMES:
        case = spec_for(name).primary
        cls = type(keras_norms.get(name, **case.kwargs))
        classes.setdefault(cls.__name__, (cls, dict(case.kwargs)))
    for make_layer, _, _ in LAYERS.values():
        layer = make_layer()
        layer = layer.cell if isinstance(layer, keras.layers.RNN) else layer
        cls = type(layer)
        required = {p.name: getattr(layer, p.name) for p in _parameters(cls) if p.default is p.empty}
        classes.setdefault(cls.__name__, (cls, required))
    classes.setdefault("TLU", (keras_norms.TLU, {}))  # FilterResponseNormalization's activation
    return classes


def _parameters(cls) -> list[inspect.Parameter]:
    """The constructor arguments of `cls`, with those its `**kwargs` pass on to a keras_norms base class
    (center, scale, the initializers, ...: in its signature or its `declared_arguments`); those of a
    Keras base class are Keras' to check."""
    found = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if not klass.__module__.startswith("keras_norms"):
            break
        parameters = inspect.signature(klass.__init__).parameters.values()
        for p in parameters:
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    # The arguments a keras_norms base class takes in `**kwargs` because the class declares them.
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
        for name, default in getattr(cls, "declared_arguments", {}).items():
            annotation = "bool" if isinstance(default, bool) else "float" if name == "epsilon" else ""
            found.setdefault(name, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                     annotation=annotation))
    return list(found.values())


CONSTRUCTORS = _constructors()


# Arguments that take any value: the values of INVALID are genuinely valid for them.
TAKES_ANY_VALUE = {
    # tensorflow-addons configs carry `groups`; InstanceNormalization ignores it (with a warning).
    ("InstanceNormalization", "groups"),
}


def _invalid_params():
    params = []
    for class_name, (cls, base) in CONSTRUCTORS.items():
        for parameter in _parameters(cls):
            if (class_name, parameter.name) in TAKES_ANY_VALUE:
                continue
            kind = _kind(parameter.name, parameter)
            for value, error in INVALID.get(kind, []):
                params.append(pytest.param(cls, base, parameter.name, value, error,
                                           id=f"{class_name}-{parameter.name}={value!r}"))
    return params


def test_every_constructor_argument_has_a_kind():
    unknown = [f"{class_name}.{p.name}" for class_name, (cls, _) in CONSTRUCTORS.items()
               for p in _parameters(cls)
               if _kind(p.name, p) is None and (class_name, p.name) not in TAKES_ANY_VALUE]
    assert not unknown, f"add these arguments to _kind (and their invalid values to INVALID): {unknown}"


@pytest.mark.parametrize(("cls", "base", "argument", "value", "error"), _invalid_params())
def test_invalid_argument_raises_naming_argument_and_value(cls, base, argument, value, error):
    with pytest.raises((TypeError, ValueError)) as raised:
        cls(**{**base, argument: value})
    message = str(raised.value)
    assert f"{argument}={value!r}" in message, f"the message does not name {argument}={value!r}: {message}"
    assert isinstance(raised.value, error), f"{type(raised.value).__name__}, not {error.__name__}: {message}"

