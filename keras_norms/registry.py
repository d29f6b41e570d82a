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
    """Lists the names `get` accepts, in registration order.

    The built-in names come first (`"batch"`, `"layer"`, `"group"`,
    `"instance"`, `"rms"`, `"frn"`, `"switchable"`, `"none"`), then those added
    with `register`. A name replaced with `register(..., overwrite=True)` keeps
    its place.

    Returns:
        A new list of the registered names (changing it does not change the registry).

    Examples:
        >>> import keras_norms
        >>> keras_norms.names()[:8]
        ['batch', 'layer', 'group', 'instance', 'rms', 'frn', 'switchable', 'none']
    """
    return list(_REGISTRY)


def register(name: str, factory: Callable[..., keras.layers.Layer], *, overwrite: bool = False) -> None:
    """Registers `factory` (a layer class or a callable returning a layer) under `name`.

    From then on `get(name, **kwargs)` calls `factory(**kwargs)`, and every
    tool that takes a norm by name (`convert_norms`, `keras_norms.models.build_model`,
    the study) accepts `name`. The registry is global to the process; the
    built-in names can be replaced with `overwrite=True`. Names are stripped
    and lower-cased, here as in every lookup: `"Pixel"` registers `"pixel"`,
    which `get("PIXEL")` finds.

    Args:
        name: The name, a str that is not empty once stripped.
        factory: A layer class, or a callable that takes keyword arguments and
            returns a new `keras.layers.Layer` (checked when `get` calls it).
        overwrite: Replace the factory already registered under `name`
            instead of raising.

    Raises:
        TypeError: `name` is not a non-empty str, or `factory` is not callable.
        ValueError: `name` is taken and `overwrite` is False.

    Examples:
        >>> import functools, keras_norms
        >>> default = keras_norms.registry.factory("group")
        >>> keras_norms.register("group", functools.partial(default, groups=8), overwrite=True)
        >>> keras_norms.get("group").groups, keras_norms.get("group", groups=4).groups
        (8, 4)
        >>> keras_norms.register("group", default)
        Traceback (most recent call last):
        ...
        ValueError: The name 'group' is already registered; pass overwrite=True to replace it.
        >>> keras_norms.register("group", default, overwrite=True)  # restore the default
        >>> keras_norms.get("group").groups
        32
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"Argument `name` must be a non-empty str. Received: name={name!r}")
    if not callable(factory):
        raise TypeError(f"Argument `factory` must be callable. Received: factory={factory!r}")
    key = name.strip().lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"The name {key!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[key] = factory


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
        A new `keras.layers.Layer` (or `spec` itself when it is a layer instance).

    Raises:
        ValueError: An unknown name (the message lists the valid ones), or
            `kwargs` given with a layer instance. The layer's constructor may
            raise too (e.g. a `ValueError` for an argument it does not take).
        TypeError: `spec` is none of the above, or a callable did not return a layer.

    Examples:
        >>> import keras_norms
        >>> layer = keras_norms.get("group", groups=8)
        >>> type(layer).__name__, layer.groups
        ('GroupNormalization', 8)
        >>> keras_norms.get(" RMS ").epsilon  # names are stripped and lower-cased
        1e-06
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
