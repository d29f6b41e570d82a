"""A small transformer encoder classifier, its norm swappable by name and placed pre, post, peri, DeepNorm."""

from __future__ import annotations

import math
import numbers

import keras
from keras import initializers, ops
from keras_norms.models._norm import resolve

from keras_norms.adaptive import AdaptiveLayerNormalization
from keras_norms.attention import MultiHeadAttention
from keras_norms.pointwise import LayerScale

#: The norm names the transformer takes beyond the registry.
EXTRA_NORMS = ("adaln",)
PLACEMENTS = ("pre", "post", "peri", "deepnorm")
QK_NORMS = (None, "rms", "layer")


@keras.saving.register_keras_serializable(package="keras_norms")
class PositionEmbedding(keras.layers.Layer):
    r"""Adds a learned embedding of each token's position to `(batch, tokens, dim)` inputs.

    $y_{b,t} = x_{b,t} + E_t$ for each example $b$ and token $t$, with one
    trainable `(tokens, dim)` weight $E$, `embeddings`, shaped when the layer is built.
    Attention is blind to the order of its tokens; this gives each position
    an identity (as ViT does), so the number of tokens is fixed by the first
    input.

    Args:
        initializer: Of the `(tokens, dim)` embeddings (ViT: truncated normal, stddev 0.02).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, tokens, dim)`, with `tokens` and `dim` those the
            layer was built for.

    Input shape:
        inputs: `(batch, tokens, dim)`, `tokens` and `dim` known.

    Output shape:
        The shape of the input.

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


def deepnorm_constants(depth: int) -> tuple[float, float]:
    """DeepNorm's residual scale `alpha` and initialization gain `beta` for an encoder of `depth` blocks.

    Wang et al. (2022), Table 1, encoder-only: ``alpha = (2 N)^(1/4)`` and
    ``beta = (8 N)^(-1/4)`` with `N` the number of blocks (each an attention
    and a feed-forward sublayer).

    Examples:
        >>> alpha, beta = deepnorm_constants(6)
        >>> round(alpha, 4), round(beta, 4)
        (1.8612, 0.3799)
    """
    return (2.0 * depth) ** 0.25, (8.0 * depth) ** -0.25


def _xavier_normal(layer_kernel, fan_in: int, fan_out: int, gain: float) -> None:
    """Redraws a built kernel from Xavier's normal: std ``gain * sqrt(2 / (fan_in + fan_out))``."""
    stddev = gain * math.sqrt(2.0 / (fan_in + fan_out))
    layer_kernel.assign(keras.random.normal(layer_kernel.shape, stddev=stddev, dtype=layer_kernel.dtype))


def transformer(norm="layer", input_shape=(32, 32, 3), num_classes: int = 10, *, placement: str = "pre",
                depth: int = 2, dim: int = 64, heads: int = 4, mlp_ratio: float = 2,
                patch_size: int | None = None, vocab_size: int = 20000, qk_norm: str | None = None,
                layer_scale: float | None = None, **norm_options) -> keras.Model:
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
    - `placement="peri"` (sandwich or Peri-LN: Gemma 2 and 3): a norm before
      each sublayer and one on its output before the residual add, ``x = x +
      norm(attn(norm(x)))``, and a final norm. `4 * depth + 1` norms.
    - `placement="deepnorm"` (DeepNet): post-norm with the stream scaled up,
      ``x = norm(alpha * x + attn(x))``, and the value, output and MLP
      kernels drawn from Xavier's normal with gain `beta` (queries and keys
      with gain 1), `alpha` and `beta` from `deepnorm_constants(depth)`.
      `2 * depth` norms.

    `qk_norm="rms"` or `"layer"` normalizes each head's queries and keys
    before the dot product (`keras_norms.MultiHeadAttention`); `layer_scale`
    multiplies each branch by a `keras_norms.LayerScale` initialized to it
    before the residual add.

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
        placement: `"pre"`, `"post"`, `"peri"` or `"deepnorm"`, where the
            norms sit (see above).
        depth: Number of blocks.
        dim: Width of the tokens.
        heads: Attention heads; must divide `dim`.
        mlp_ratio: Width of the MLP's hidden layer, in multiples of `dim`.
        patch_size: Images: side of the square patches; must divide both
            image sides. Default: the largest such size that leaves at least
            4 patches along each side (2 for 8x8 digits, 7 for 28x28, 8 for 32x32).
        vocab_size: Token ids: the number of distinct ids.
        qk_norm: None, or `"rms"` or `"layer"`: QK-norm in every attention layer.
        layer_scale: None, or the initial value of a LayerScale on every
            residual branch (e.g. 1e-5).
        **norm_options: Passed to every norm layer (e.g. `epsilon=1e-6`, `groups=8`).

    Returns:
        A functional `keras.Model` named `"transformer"` (logits).

    Raises:
        ValueError: A bad `placement`, `qk_norm` or `layer_scale`, shape or size option, an unknown norm
            name, `"instance"` (or one feature per group: the mean pooling
            would see only its beta), or adaLN-Zero (`zero=True`).
        TypeError: A `norm` that is a layer instance or not callable.

    References:
        - Vaswani et al., "Attention Is All You Need", NIPS 2017.
          [arXiv:1706.03762](https://arxiv.org/abs/1706.03762)
        - Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for
          Image Recognition at Scale" (ViT), ICLR 2021.
          [arXiv:2010.11929](https://arxiv.org/abs/2010.11929)
        - Xiong et al., "On Layer Normalization in the Transformer Architecture"
          (pre- against post-norm), ICML 2020.
          [arXiv:2002.04745](https://arxiv.org/abs/2002.04745)
        - Kim et al., "Peri-LN: Revisiting Normalization Layer in the
          Transformer Architecture", ICML 2025.
          [arXiv:2502.02732](https://arxiv.org/abs/2502.02732)
        - Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", 2022.
          [arXiv:2203.00555](https://arxiv.org/abs/2203.00555)
        - Touvron, Cord, Sablayrolles, Synnaeve and Jégou, "Going deeper with
          Image Transformers" (LayerScale), ICCV 2021.
          [arXiv:2103.17239](https://arxiv.org/abs/2103.17239)

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
    if qk_norm not in QK_NORMS:
        raise ValueError(f"transformer: `qk_norm` must be one of {QK_NORMS}. Received: qk_norm={qk_norm!r}")
    if layer_scale is not None and (isinstance(layer_scale, bool) or not isinstance(layer_scale, numbers.Real)
                                    or not 0 < layer_scale < math.inf):
        raise ValueError(
            f"transformer: `layer_scale` must be None or a float > 0. Received: layer_scale={layer_scale!r}"
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

        def normalize(tensor, name):
            return AdaptiveLayerNormalization(name=name, **norm_options)(tensor, context)
    else:
        def normalize(tensor, name):
            # A layer class takes `name`; a factory of the user's may not.
            named = {"name": name} if description.layer_class is not None else {}
            return description.layer(dim, 3, **named, **norm_options)(tensor)

    deep_alpha, deep_beta = deepnorm_constants(depth)
    redraw = []  # DeepNorm: (kernel, fan_in, fan_out, gain) once the layers are built

    def attention(tensor, block):
        name = f"block{block}_attention"
        if qk_norm is None:
            layer = keras.layers.MultiHeadAttention(heads, dim // heads, name=name)
        else:
            layer = MultiHeadAttention(heads, dim // heads, qk_norm=qk_norm, name=name)
        output = layer(tensor, tensor)
        if placement == "deepnorm":
            redraw.extend([(layer._query_dense.kernel, dim, dim, 1.0),
                           (layer._key_dense.kernel, dim, dim, 1.0),
                           (layer._value_dense.kernel, dim, dim, deep_beta),
                           (layer._output_dense.kernel, dim, dim, deep_beta)])
        return output

    def mlp(tensor, block):
        # The exact (erf) GELU: the TFLite converter fuses it into the built-in GELU op, so it needs
        # no erf kernel (TFLite has none) and is as cheap as the tanh approximation.
        first = keras.layers.Dense(hidden, activation="gelu", name=f"block{block}_mlp_hidden")
        second = keras.layers.Dense(dim, name=f"block{block}_mlp_output")
        output = second(first(tensor))
        if placement == "deepnorm":
            redraw.extend([(first.kernel, dim, hidden, deep_beta), (second.kernel, hidden, dim, deep_beta)])
        return output

    for block in range(depth):
        for branch, kind in ((attention, "attention"), (mlp, "mlp")):
            prefix = f"block{block}_{kind}"
            add = keras.layers.Add(name=f"{prefix}_residual")
            if placement in ("pre", "peri"):
                update = branch(normalize(x, f"{prefix}_norm"), block)
                if placement == "peri":
                    update = normalize(update, f"{prefix}_output_norm")
            else:
                update = branch(x, block)
            if layer_scale is not None:
                update = LayerScale(init_values=layer_scale, name=f"{prefix}_layer_scale")(update)
            if placement == "deepnorm":
                x = keras.layers.Rescaling(deep_alpha, name=f"{prefix}_deepnorm_scale")(x)
            x = add([x, update])
            if placement in ("post", "deepnorm"):
                x = normalize(x, f"{prefix}_norm")
    if placement in ("pre", "peri"):
        x = normalize(x, "final_norm")
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="transformer")
    for kernel, fan_in, fan_out, gain in redraw:
        _xavier_normal(kernel, fan_in, fan_out, gain)
    return model
