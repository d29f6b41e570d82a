"""A small transformer encoder classifier, its norm swappable by name and placed before or after."""

from __future__ import annotations

import math
import numbers

import keras
from keras import initializers, ops
from keras_norms.models._norm import resolve

from keras_norms.adaptive import AdaptiveLayerNormalization

#: The norm names the transformer takes beyond the registry.
EXTRA_NORMS = ("adaln",)
PLACEMENTS = ("pre", "post")


@keras.saving.register_keras_serializable(package="keras_norms")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each token's position to `(batch, tokens, dim)` inputs.

    ``y[b, t, :] = x[b, t, :] + embeddings[t, :]``, with one trainable
    `(tokens, dim)` weight, `embeddings`, shaped when the layer is built.
    Attention is blind to the order of its tokens; this gives each position
    an identity (as ViT does), so the number of tokens is fixed by the first
    input.

    Args:
        initializer: Of the `(tokens, dim)` embeddings (ViT: truncated normal, stddev 0.02).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, tokens, dim)`, with `tokens` and `dim` those the
            layer was built for.

    Returns:
        The inputs plus the embeddings, of the input's shape.

    Raises:
        ValueError: When built for inputs that are not `(batch, tokens, dim)`
            with known `tokens` and `dim`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms.models import PositionEmbedding
        >>> layer = PositionEmbedding(initializer="ones")
        >>> np.asarray(layer(np.zeros((2, 3, 4), "float32")))[1, 2]
        array([1., 1., 1., 1.], dtype=float32)
    """

    def __init__(self, initializer="truncated_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = initializers.get(initializer)
        self.embeddings = None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "PositionEmbedding: inputs must be (batch, tokens, dim) with known tokens and dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.embeddings = self.add_weight(name="embeddings", shape=tuple(input_shape[1:]),
                                          initializer=self.initializer)

    def call(self, inputs):
        return ops.add(inputs, self.embeddings)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initializer": initializers.serialize(self.initializer)}


def default_patch_size(height: int, width: int) -> int:
    """The largest patch size dividing both sides that leaves at least 4 patches along each side.

    Examples:
        >>> default_patch_size(8, 8), default_patch_size(28, 28), default_patch_size(32, 32)
        (2, 7, 8)
    """
    limit = max(min(height, width) // 4, 1)
    common = math.gcd(height, width)
    return max(p for p in range(1, limit + 1) if common % p == 0)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"transformer: `{name}` must be a positive int. Received: {name}={value!r}")
    return value


def _check_shape(input_shape) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not 1 <= len(shape) <= 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            "transformer: `input_shape` must be (height, width, channels) for images, (time steps, "
            "features) for float sequences or (tokens,) for integer token ids, of positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    return shape


def _check_norm(norm, dim: int, norm_options: dict):
    """Raises for a norm that cannot serve every position; its description, or None for adaLN."""
    description = resolve(norm, extra=EXTRA_NORMS)
    if description is not None and description.layer_class is AdaptiveLayerNormalization:
        description = None
    if description is None and norm_options.get("zero"):
        raise ValueError(
            "transformer: adaLN-Zero returns a gate for its residual branch, which this model does not "
            "use; norm='adaln' takes zero=False only. Received: zero=True"
        )
    # Mean pooling follows the last norm: a norm that centres each feature over the tokens of an
    # example leaves nothing but its beta for the pooling to see.
    if description is not None and description.normalizes_channels_alone(dim, **norm_options):
        shown = f"{norm!r}" + (f", groups={norm_options['groups']}" if "groups" in norm_options else "")
        raise ValueError(
            "transformer: a norm with one feature per group normalizes each feature over the tokens, so "
            "the mean over tokens that the classifier pools is just its beta, whatever the input; use "
            f"'layer', 'rms', 'group' with fewer groups, ... Received: norm={shown}"
        )
    return description


def _embed(inputs, shape, dim: int, patch_size, vocab_size: int):
    """`(batch, tokens, dim)` token embeddings of images, float sequences or token ids."""
    if len(shape) == 1:
        return keras.layers.Embedding(vocab_size, dim, name="embedding")(inputs)
    if len(shape) == 2:
        return keras.layers.Dense(dim, name="embedding")(inputs)
    height, width, _ = shape
    patch = default_patch_size(height, width) if patch_size is None else patch_size
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or height % patch or width % patch:
        raise ValueError(
            f"transformer: `patch_size` must be a positive int dividing both image sides {height}x{width}. "
            f"Received: patch_size={patch_size!r}"
        )
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="embedding")(inputs)
    return keras.layers.Reshape(((height // patch) * (width // patch), dim), name="patches")(x)


def transformer(norm="layer", input_shape=(32, 32, 3), num_classes: int = 10, *, placement: str = "pre",
                depth: int = 2, dim: int = 64, heads: int = 4, mlp_ratio: float = 2,
                patch_size: int | None = None, vocab_size: int = 20000, **norm_options) -> keras.Model:
    """A transformer encoder classifier (Vaswani et al., 2017; ViT) with `norm` before or after each block.

    Tokens: image patches (a `Conv2D` with kernel = stride = `patch_size`),
    a `Dense` projection of each step of a float sequence, or a
    `keras.layers.Embedding` of integer token ids (no padding mask: padding
    tokens are attended to like the others); plus a learned `PositionEmbedding`.
    Then `depth` blocks of `MultiHeadAttention` and an MLP (``Dense(mlp_ratio *
    dim, gelu) -> Dense(dim)``), mean pooling over the tokens and `Dense(num_classes)` logits.

    - `placement="pre"` (GPT-2, ViT): ``x = x + attn(norm(x))``, ``x = x +
      mlp(norm(x))``, and a final norm before pooling; the residual stream
      itself is never normalized. `2 * depth + 1` norms.
    - `placement="post"` (the original transformer, BERT): ``x = norm(x +
      attn(x))``, ``x = norm(x + mlp(x))``. `2 * depth` norms.

    Every norm acts on `(batch, tokens, dim)` with the features last:
    `"layer"` and `"rms"` normalize each token, `"batch"` each feature over
    batch and tokens, `"group"` groups of features over the tokens of an
    example, `"frn"` each feature by its mean square over the tokens,
    `"switchable"` mixes instance, layer and batch statistics, `"none"` is
    the identity. `norm="adaln"` is adaptive layer norm
    (`keras_norms.AdaptiveLayerNormalization`): a classifier has no external
    condition, so each norm is conditioned on the mean over tokens of the
    embedded input (after the position embedding), computed once: a learned
    global conditioning of the whole network on its input.

    Args:
        norm: A registry name, `"adaln"`, a layer class or a callable returning a layer.
        input_shape: `(height, width, channels)` images, `(time steps,
            features)` float sequences, or `(tokens,)` integer token ids.
        num_classes: Number of output logits.
        placement: `"pre"` or `"post"`, where the norms sit (see above).
        depth: Number of blocks.
        dim: Width of the tokens.
        heads: Attention heads; must divide `dim`.
        mlp_ratio: Width of the MLP's hidden layer, in multiples of `dim`.
        patch_size: Images: side of the square patches; must divide both
            image sides. Default: the largest such size that leaves at least
            4 patches along each side (2 for 8x8 digits, 7 for 28x28, 8 for 32x32).
        vocab_size: Token ids: the number of distinct ids.
        **norm_options: Passed to every norm layer (e.g. `epsilon=1e-6`, `groups=8`).

    Returns:
        A functional `keras.Model` named `"transformer"` (logits).

    Raises:
        ValueError: A bad `placement`, shape or size option, an unknown norm
            name, `"instance"` (or one feature per group: the mean pooling
            would see only its beta), or adaLN-Zero (`zero=True`).
        TypeError: A `norm` that is a layer instance or not callable.

    Reference:
        Vaswani et al., 2017, "Attention Is All You Need", https://arxiv.org/abs/1706.03762;
        Dosovitskiy et al., 2021 (ViT), https://arxiv.org/abs/2010.11929;
        Xiong et al., 2020 (pre- vs post-norm), https://arxiv.org/abs/2002.04745

    Examples:
        >>> from keras_norms.models import transformer
        >>> model = transformer("rms", input_shape=(8, 8, 1), placement="post", dim=16, heads=2)
        >>> model.input_shape, model.output_shape
        ((None, 8, 8, 1), (None, 10))
    """
    if placement not in PLACEMENTS:
        raise ValueError(
            f"transformer: `placement` must be one of {PLACEMENTS}. Received: placement={placement!r}"
        )
    shape = _check_shape(input_shape)
    for name, value in (("depth", depth), ("dim", dim), ("heads", heads), ("vocab_size", vocab_size)):
        _check_positive_int(name, value)
    if dim % heads:
        raise ValueError(f"transformer: `heads` must divide `dim`. Received: heads={heads}, dim={dim}")
    real = isinstance(mlp_ratio, numbers.Real) and not isinstance(mlp_ratio, bool)
    hidden = round(dim * mlp_ratio) if real and math.isfinite(mlp_ratio) else 0
    if hidden < 1:
        raise ValueError(
            f"transformer: `mlp_ratio` must be a number > 0 giving an MLP of at least one unit. "
            f"Received: mlp_ratio={mlp_ratio!r}"
        )
    description = _check_norm(norm, dim, norm_options)

    inputs = keras.Input(shape, dtype="int32" if len(shape) == 1 else "float32")
    x = _embed(inputs, shape, dim, patch_size, vocab_size)
    x = PositionEmbedding(initializers.TruncatedNormal(stddev=0.02), name="position_embedding")(x)
    if description is None:
        context = keras.layers.GlobalAveragePooling1D(name="context")(x)

        def normalize(tensor):
            return AdaptiveLayerNormalization(**norm_options)(tensor, context)
    else:
        def normalize(tensor):
            return description.layer(dim, 3, **norm_options)(tensor)

    def attention(tensor, block):
        layer = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{block}_attention")
        return layer(tensor, tensor)

    def mlp(tensor, block):
        # The exact (erf) GELU: the TFLite converter fuses it into the built-in GELU op, so it needs
        # no erf kernel (TFLite has none) and is as cheap as the tanh approximation.
        tensor = keras.layers.Dense(hidden, activation="gelu", name=f"block{block}_mlp_hidden")(tensor)
        return keras.layers.Dense(dim, name=f"block{block}_mlp_output")(tensor)

    for block in range(depth):
        for branch, kind in ((attention, "attention"), (mlp, "mlp")):
            add = keras.layers.Add(name=f"block{block}_{kind}_residual")
            if placement == "pre":
                x = add([x, branch(normalize(x), block)])
            else:
                x = normalize(add([x, branch(x, block)]))
    if placement == "pre":
        x = normalize(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="transformer")
