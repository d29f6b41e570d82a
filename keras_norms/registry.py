"""Normalization layers by name, so a model can swap its norm with one string."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import keras

from keras_norms.batch import BatchNormalization
from keras_norms.group import GroupNormalization, InstanceNormalization
from keras_norms.layer import LayerNormalization, RMSNormalization
from keras_norms.pointwise import DynamicErf, DynamicTanh
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
    "dyt": DynamicTanh,
    "derf": DynamicErf,
}

#: Wu and He's default number of groups; fewer when a layer has fewer channels.
MAX_GROUPS = 32


def default_groups(channels: int) -> int:
    """The largest divisor of `channels` that is at most 32 and leaves 2+ channels per group.

    Examples:
        >>> from keras_norms.registry import default_groups
        >>> default_groups(64), default_groups(16), default_groups(6), default_groups(1)
        (32, 8, 3, 1)
    """
    for groups in range(min(MAX_GROUPS, max(channels // 2, 1)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


@dataclasses.dataclass(frozen=True)
class Norm:
    """One description of a normalization: what makes it and what it needs.

    `describe` returns it for a registry name, a layer class or a factory;
    every tool that takes a norm (`convert_norms`, `keras_norms.models`, the
    command line, the study) reads it instead of working the same things out
    again.

    Args:
        name: The registry name (also found for a registered class given
            directly), or None.
        factory: The layer class or callable that makes the layer.
        layer_class: The class the factory makes when it is known (the
            factory itself, or the class a `functools.partial` wraps), else None.
        preset: Arguments the factory fixes (a `functools.partial`'s keywords).
        takes_groups: It takes `groups` (group norm); `layer` fills it in
            from the channels when it is not given.
        axis_is_channel_axis: False when `axis` lists the reduced axes
            instead of the channel axis (filter response norm); `layer` then
            sets it to the axes between batch and channels.
        batch_norm: A batch norm (Keras' or ours): batch statistics in
            training, moving averages in inference; what
            `recalibrate_batch_norms`, `freeze_batch_norms` and
            `synchronize_batch_norms` act on.
        batch_dependent: In training, one example's output depends on the
            other examples of the batch (batch and switchable norm).
        per_channel: Each channel of an example is normalized alone
            (instance norm), so its mean over the positions is always beta.
        identity: The name `"none"`: no normalization.
        elementwise: It computes no statistics, each value on its own (DyT,
            Derf): what `convert_norms` puts in place of layer and RMS norms.

    Raises:
        TypeError: From `layer`, when the factory does not return a layer.

    Examples:
        >>> import keras_norms
        >>> norm = keras_norms.describe("group")
        >>> norm.layer_class.__name__, norm.takes_groups, norm.batch_dependent
        ('GroupNormalization', True, False)
        >>> norm.layer(channels=48).groups
        24
        >>> keras_norms.describe(keras_norms.BatchNormalization).name
        'batch'
    """

    name: str | None
    factory: Callable[..., keras.layers.Layer]
    layer_class: type | None
    preset: dict
    takes_groups: bool
    axis_is_channel_axis: bool
    batch_norm: bool
    batch_dependent: bool
    per_channel: bool
    identity: bool
    elementwise: bool

    def layer(self, channels: int | None = None, rank: int | None = None, **options) -> keras.layers.Layer:
        """A new layer for a tensor with `channels` channels last and `rank` axes (batch included).

        `options` go to the factory. Defaults that depend on the tensor: a
        group norm without `groups` gets `default_groups(channels)`; a filter
        response norm without `axis` gets every axis between batch and
        channels (its own default suits images only).

        Raises:
            TypeError: The factory did not return a layer.
        """
        if self.takes_groups and channels is not None and "groups" not in {**self.preset, **options}:
            options = {**options, "groups": default_groups(channels)}
        if not self.axis_is_channel_axis and rank is not None and "axis" not in {**self.preset, **options}:
            options = {**options, "axis": tuple(range(1, rank - 1))}
        layer = self.factory(**options)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"{self.factory!r} returned {type(layer).__name__}, not a keras.layers.Layer. "
                            f"Received: {layer!r}")
        return layer

    def normalizes_channels_alone(self, channels: int, **options) -> bool:
        """True if each channel is normalized alone: instance norm, or one channel per group."""
        groups = {**self.preset, **options}.get("groups")
        return self.per_channel or (self.takes_groups and groups in (-1, channels))


def _layer_class(factory) -> tuple[type | None, dict]:
    """The layer class `factory` makes, when known, and the arguments it fixes."""
    preset = {}
    while isinstance(factory, functools.partial):
        preset = {**factory.keywords, **preset}
        factory = factory.func
    if isinstance(factory, type) and issubclass(factory, keras.layers.Layer):
        return factory, preset
    return None, preset


def describe(spec) -> Norm:
    """The description of a normalization given by name, class or factory.

    Args:
        spec: A registered name (stripped and lower-cased), a layer class,
            or a callable returning a new layer.

    Returns:
        A `Norm`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
        TypeError: A layer instance (it has one set of weights; give its
            class or name) or something that is neither a name nor a callable.

    Examples:
        >>> import keras_norms
        >>> keras_norms.describe(" Batch ").batch_norm
        True
        >>> keras_norms.describe("frn").axis_is_channel_axis
        False
    """
    if isinstance(spec, keras.layers.Layer):
        raise TypeError(
            "Argument `spec` must be a registry name, a layer class or a callable returning a new layer; "
            f"a layer instance has one set of weights, so give its class or name. Received: spec={spec!r}"
        )
    if isinstance(spec, str):
        name, make = spec.strip().lower(), factory(spec)
    elif callable(spec):
        make = spec
        name = next((key for key, value in _REGISTRY.items() if value is spec), None)
    else:
        raise TypeError(
            "Argument `spec` must be a registry name, a layer class or a callable returning a layer. "
            f"Received: spec={spec!r}"
        )
    cls, preset = _layer_class(make)

    def kind(*classes) -> bool:
        return cls is not None and issubclass(cls, classes)

    batch_norm = kind(BatchNormalization, keras.layers.BatchNormalization)
    per_channel = kind(InstanceNormalization)
    return Norm(
        name=name, factory=make, layer_class=cls, preset=preset,
        takes_groups=kind(GroupNormalization, keras.layers.GroupNormalization) and not per_channel,
        axis_is_channel_axis=getattr(cls, "axis_is_channel_axis", True),
        batch_norm=batch_norm, batch_dependent=batch_norm or kind(SwitchableNormalization),
        per_channel=per_channel, identity=name == "none", elementwise=kind(DynamicTanh, DynamicErf),
    )


def names() -> list[str]:
    """Lists the names `get` accepts, in registration order.

    The built-in names come first (`"batch"`, `"layer"`, `"group"`,
    `"instance"`, `"rms"`, `"frn"`, `"switchable"`, `"none"`, and the norm-free
    `"dyt"` and `"derf"`), then those added with `register`. A name replaced
    with `register(..., overwrite=True)` keeps its place.

    Returns:
        A new list of the registered names (changing it does not change the registry).

    Examples:
        >>> import keras_norms
        >>> keras_norms.names()[:10]
        ['batch', 'layer', 'group', 'instance', 'rms', 'frn', 'switchable', 'none', 'dyt', 'derf']
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
            `"rms"`, `"frn"`, `"switchable"`, `"none"` for the identity, `"dyt"`,
            `"derf"`, ...),
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
    return describe(spec).layer(**kwargs)
