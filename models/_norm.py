"""How the factories turn their `norm` argument into a new layer at each position."""

from __future__ import annotations

from keras_norms import registry


def resolve(norm, extra: tuple[str, ...] = ()) -> registry.Norm | None:
    """The registry's description of `norm`, raising early for one that cannot serve every position.

    Args:
        norm: The factory's `norm` argument.
        extra: Names a model takes beyond the registry (the transformer's
            `"adaln"`); for those it returns None.

    Raises:
        ValueError: An unknown name (the message lists the valid ones).
        TypeError: A layer instance (a model needs a new layer at each
            position) or something that is neither a name nor a callable.
    """
    if isinstance(norm, str) and norm.strip().lower() in extra:
        return None
    try:
        return registry.describe(norm)
    except ValueError:
        valid = [*registry.names(), *extra]
        raise ValueError(f"Unknown normalization {norm!r}. Valid names: {', '.join(valid)}. "
                         f"Received: norm={norm!r}") from None
    except TypeError:
        raise TypeError(
            "Argument `norm` must be a registry name, a layer class or a callable returning a new "
            "layer: a model needs its own layer at each position, so one instance cannot be "
            f"shared. Received: norm={norm!r}"
        ) from None


def make_norm(norm, channels: int, rank: int = 4, **options):
    """A new normalization layer for a tensor of `rank` (batch included) with `channels` channels last.

    `options` go to the layer's constructor; `Norm.layer` fills in the
    defaults that depend on the tensor (groups, filter response norm's axes).
    """
    return resolve(norm).layer(channels, rank, **options)
