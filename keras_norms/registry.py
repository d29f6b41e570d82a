"""Normalization layers by name, so a model can swap its norm with one string."""

from __future__ import annotations

from collections.abc import Callable

import keras

from keras_norms.batch import BatchNormalization
from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.layer import LayerNormalization, RMSNormalization
from keras_norms.response import FilterResponseNormalization
from keras_norms.switchable import SwitchableNormalization

_REGISTRY: dict[str, Callable[..., keras.layers.Layer]] = {
    "batch": BatchNormalization,
    "layer": LayerNormalization,
    "group": GroupNormalization,
    "instance": InstanceNormalization,
    "rms": RMSNormalization,
    "frn": FilterResponseNormalization,
    "switchable": SwitchableNormalization,
    "none": keras.layers.Identity,
}


def names() -> list[str]:
    """The registered names, in registration order."""
    return list(_REGISTRY)


def register(name: str, factory: Callable[..., keras.layers.Layer], *, overwrite: bool = False) -> None:
    """Registers `factory` (a layer class or a callable returning a layer) under `name`.

    Raises:
        ValueError: `name` is taken and `overwrite` is False.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Argument `name` must be a non-empty str. Received: name={name!r}")
    if not callable(factory):
        raise TypeError(f"Argument `factory` must be callable. Received: factory={factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"The name {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = factory


def factories() -> list[Callable[..., keras.layers.Layer]]:
    """The registered layer classes and callables, in registration order."""
    return list(_REGISTRY.values())


def factory(name: str) -> Callable[..., keras.layers.Layer]:
    """The layer class (or callable) registered under `name`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"Unknown normalization {name!r}. Valid names: {', '.join(names())}. "
                         f"Received: spec={name!r}")
    return _REGISTRY[key]


def get(spec, **kwargs) -> keras.layers.Layer:
    """Returns a new normalization layer for `spec`.

    Args:
        spec: A registered name (`"batch"`, `"layer"`, `"group"`, `"instance"`,
            `"rms"`, `"frn"`, `"switchable"`, `"none"` for the identity, ...),
            a layer class or another callable returning a layer (called with
            `kwargs`), or a layer instance (returned as is; `kwargs` must then
            be empty).
        **kwargs: Constructor arguments, e.g. `groups=8`.

    Returns:
        A `keras.layers.Layer`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones), or
            `kwargs` given with a layer instance.
        TypeError: `spec` is none of the above, or a callable did not return a layer.

    Example:

    >>> import keras_norms
    >>> keras_norms.get("group", groups=8).groups
    8
    """
    if isinstance(spec, keras.layers.Layer):
        if kwargs:
            raise ValueError(
                f"Arguments {sorted(kwargs)} cannot be applied to an existing layer instance "
                f"{spec.name!r}; pass its class or name instead. Received: spec={spec!r}"
            )
        return spec
    if isinstance(spec, str):
        make = factory(spec)
    elif callable(spec):
        make = spec
    else:
        raise TypeError(
            "Argument `spec` must be a registered name, a layer class, a callable returning a "
            f"layer, or a layer instance. Received: spec={spec!r}"
        )
    layer = make(**kwargs)
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(f"{spec!r} returned {type(layer).__name__}, not a keras.layers.Layer.")
    return layer
