"""How the factories turn their `norm` argument into a new layer at each position."""

from __future__ import annotations

import keras

import keras_norms
from keras_norms.group import GroupNormalization, InstanceNormalization

#: Wu and He's default number of groups; fewer when a layer has fewer channels.
MAX_GROUPS = 32


def refuse_instance(norm) -> None:
    """Raises `TypeError` for a layer instance: each position of a model needs a new layer."""
    if isinstance(norm, keras.layers.Layer):
        raise TypeError(
            "Argument `norm` must be a registry name, a layer class or a callable returning a new "
            "layer: a model needs its own layer at each position, so one instance cannot be "
            f"shared. Received: norm={norm!r}"
        )


def check_norm(norm, extra: tuple[str, ...] = ()) -> None:
    """Raises early for a `norm` that cannot give a new layer at every position.

    Args:
        norm: The factory's `norm` argument.
        extra: Names a model accepts beyond the registry (the transformer's `"adaln"`).

    Raises:
        ValueError: An unknown registry name (the message lists the valid ones).
        TypeError: A layer instance (a model needs a new layer at each position)
            or something that is neither a name nor a callable.
    """
    refuse_instance(norm)
    if isinstance(norm, str):
        valid = [*keras_norms.names(), *extra]
        if norm.strip().lower() not in valid:
            raise ValueError(
                f"Unknown normalization {norm!r}. Valid names: {', '.join(valid)}. "
                f"Received: norm={norm!r}"
            )
    elif not callable(norm):
        raise TypeError(
            "Argument `norm` must be a registry name, a layer class or a callable returning a "
            f"layer. Received: norm={norm!r}"
        )


def norm_key(norm) -> str | None:
    """The lower-case registry name of `norm` if it is a name, else None."""
    return norm.strip().lower() if isinstance(norm, str) else None


def is_group_norm(norm) -> bool:
    """True if `norm` names or is a group-normalization class that takes `groups`."""
    if norm_key(norm) == "group":
        return True
    return (
        isinstance(norm, type)
        and issubclass(norm, (GroupNormalization, keras.layers.GroupNormalization))
        and not issubclass(norm, InstanceNormalization)
    )


def default_groups(channels: int) -> int:
    """The largest divisor of `channels` that is at most 32 and leaves 2+ channels per group.

    Examples:
        >>> default_groups(64), default_groups(16), default_groups(6), default_groups(1)
        (32, 8, 3, 1)
    """
    for groups in range(min(MAX_GROUPS, max(channels // 2, 1)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def is_filter_response_norm(norm) -> bool:
    """True if `norm` names or is `FilterResponseNormalization` (its `axis` lists spatial axes)."""
    frn = getattr(keras_norms, "FilterResponseNormalization", None)
    return norm_key(norm) == "frn" or (frn is not None and isinstance(norm, type) and issubclass(norm, frn))


def make_norm(norm, channels: int, rank: int = 4, **options) -> keras.layers.Layer:
    """A new normalization layer for a tensor of `rank` (batch included) with `channels` channels last.

    `options` go to the layer's constructor. Defaults that depend on the
    tensor: a group norm without `groups` gets `default_groups(channels)`; a
    filter response norm without `axis` gets every axis between batch and
    channels (its own default suits images only). A layer instance is
    refused: it would be shared by every position.
    """
    refuse_instance(norm)
    if is_group_norm(norm) and "groups" not in options:
        options = {**options, "groups": default_groups(channels)}
    if is_filter_response_norm(norm) and "axis" not in options:
        options = {**options, "axis": tuple(range(1, rank - 1))}
    return keras_norms.get(norm, **options)
