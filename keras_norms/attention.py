"""Multi-head attention with QK-norm: the projected queries and keys normalized before the dot product."""

from __future__ import annotations

import keras

from keras_norms._checks import check_bool, check_epsilon
from keras_norms.layer import LayerNormalization, RMSNormalization

QK_NORMS = (None, "rms", "layer")


def _check_qk_norm(qk_norm):
    if qk_norm is None or (isinstance(qk_norm, str) and qk_norm in QK_NORMS):
        return qk_norm
    raise ValueError(f'Argument `qk_norm` must be None, "rms" or "layer". Received: qk_norm={qk_norm!r}')


@keras.saving.register_keras_serializable(package="keras_norms")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    r"""Keras' multi-head attention, with optional QK normalization (QK-norm).

    A drop-in subclass of `keras.layers.MultiHeadAttention`: the same
    constructor arguments, weights, config and call signature. With
    `qk_norm="rms"` or `"layer"`, the projected queries and keys, of shape
    `(batch, tokens, num_heads, key_dim)`, are normalized (RMS or layer
    normalization, each with learned weights of its own: the sublayers
    `query_norm` and `key_norm`, $N_q$ and $N_k$) before the scaled dot
    product of each head:

    $$
    \operatorname{attention}(Q, K, V) =
    \operatorname{softmax}\left(\frac{N_q(Q) \, N_k(K)^\top}{\sqrt{d_k}}\right) V,
    $$

    with $d_k$ the `key_dim`. The attention
    logits are then bounded whatever the scale of the inputs and of the
    projections, which keeps the softmax from saturating to one-hot attention
    and the training of large transformers stable (ViT-22B, OLMo 2, Qwen3,
    Gemma 3).

    `qk_norm_per_head=True` normalizes each head over its own `key_dim`
    values, with a `gamma` of shape `(key_dim,)` shared by the heads (Qwen3,
    Gemma 3); `False` normalizes the `num_heads * key_dim` values of a token
    together, with a `gamma` of shape `(num_heads, key_dim)` (OLMo 2).

    With `qk_norm=None` (the default) the layer is Keras' layer: the same
    weights and outputs. (Keras 3.15 sends `use_causal_mask=True` without any
    other mask to the backend's causal kernel only in its own class, not in a
    subclass: here the causal mask is built as a tensor, as Keras does when a
    mask is given too; the outputs agree to float rounding.)

    Args:
        num_heads: Number of attention heads, as `keras.layers.MultiHeadAttention`.
        key_dim: Size of each attention head for query and key, as
            `keras.layers.MultiHeadAttention`.
        *args: The further positional arguments of
            `keras.layers.MultiHeadAttention` (`value_dim`, `dropout`, ...),
            as in the installed Keras.
        qk_norm: None (no QK normalization), `"rms"` (`keras_norms.RMSNormalization`,
            no offset) or `"layer"` (`keras_norms.LayerNormalization`, with `gamma`
            and `beta`): the normalization of the projected queries and keys.
        qk_norm_per_head: If `True`, normalize each head over its `key_dim`
            values (`gamma` of shape `(key_dim,)`, shared by the heads); if
            `False`, all the heads of a token together (`gamma` of shape
            `(num_heads, key_dim)`).
        qk_norm_epsilon: Small float added to the mean square (or variance)
            of the QK normalization, > 0.
        **kwargs: The keyword arguments of `keras.layers.MultiHeadAttention`
            (`value_dim`, `dropout`, `use_bias`, `output_shape`,
            `attention_axes`, `kernel_initializer`, ... and the base layer
            arguments `name`, `dtype`, ...), as `keras.layers.MultiHeadAttention`.

    Call arguments:
        query: Query tensor of shape `(batch, target_tokens, dim)`.
        value: Value tensor of shape `(batch, source_tokens, dim)`.
        key: Optional key tensor of shape `(batch, source_tokens, dim)`;
            `value` by default.
        query_mask: Optional boolean mask of `query`, shape `(batch,
            target_tokens)`; Keras passes the mask of a masked input (after
            `Embedding(mask_zero=True)`) itself.
        value_mask: Optional boolean mask of `value`, shape `(batch,
            source_tokens)`, as `query_mask`.
        key_mask: Optional boolean mask of `key`, as `value_mask`.
        attention_mask: Optional boolean mask of shape `(batch, target_tokens,
            source_tokens)`: True where a query may attend to a key.
        return_attention_scores: If `True`, return the attention
            probabilities too.
        training: Whether to apply the attention dropout.
        use_causal_mask: If `True`, each token attends to itself and the
            tokens before it only.

    Input shape:
        query: `(batch, target_tokens, dim)`.
        value: `(batch, source_tokens, dim)`.
        key: `(batch, source_tokens, dim)`.

    Output shape:
        `(batch, target_tokens, dim)`, or `(batch, target_tokens,
        *output_shape)` with `output_shape`; the attention scores
        `(batch, num_heads, target_tokens, source_tokens)`.

    Returns:
        The attention output, of shape `(batch, target_tokens, dim)` (or
        `output_shape`); with `return_attention_scores=True`, the tuple
        `(attention_output, attention_scores)`, the scores of shape `(batch,
        num_heads, target_tokens, source_tokens)`.

    Raises:
        ValueError: If `qk_norm` is not None, `"rms"` or `"layer"`, or
            `qk_norm_epsilon` is not finite and > 0; and where
            `keras.layers.MultiHeadAttention` raises.
        TypeError: If `qk_norm_per_head` is not a bool or `qk_norm_epsilon` is
            not a real number.

    References:
        - Henry et al., "Query-Key Normalization for Transformers", Findings of
          EMNLP 2020. [arXiv:2010.04245](https://arxiv.org/abs/2010.04245)
        - Dehghani et al., "Scaling Vision Transformers to 22 Billion
          Parameters" (ViT-22B), ICML 2023.
          [arXiv:2302.05442](https://arxiv.org/abs/2302.05442)
        - Team OLMo, "2 OLMo 2 Furious" (OLMo 2), 2024.
          [arXiv:2501.00656](https://arxiv.org/abs/2501.00656)
        - Qwen Team, "Qwen3 Technical Report", 2025.
          [arXiv:2505.09388](https://arxiv.org/abs/2505.09388)

    Examples:
        >>> import numpy as np, keras_norms
        >>> x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
        >>> layer = keras_norms.MultiHeadAttention(num_heads=2, key_dim=4, qk_norm="rms")
        >>> tuple(layer(x, x).shape)
        (2, 5, 8)
        >>> tuple(layer.query_norm.gamma.shape), tuple(layer.key_norm.gamma.shape)
        ((4,), (4,))
        >>> across = keras_norms.MultiHeadAttention(2, 4, qk_norm="layer", qk_norm_per_head=False)
        >>> y = across(x, x)
        >>> tuple(across.query_norm.gamma.shape), tuple(across.key_norm.beta.shape)
        ((2, 4), (2, 4))
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        *args,
        qk_norm: str | None = None,
        qk_norm_per_head: bool = True,
        qk_norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        qk_norm = _check_qk_norm(qk_norm)
        qk_norm_per_head = check_bool("qk_norm_per_head", qk_norm_per_head)
        qk_norm_epsilon = check_epsilon(qk_norm_epsilon, "qk_norm_epsilon")
        super().__init__(num_heads, key_dim, *args, **kwargs)
        self.qk_norm = qk_norm
        self.qk_norm_per_head = qk_norm_per_head
        self.qk_norm_epsilon = qk_norm_epsilon
        self.query_norm = None
        self.key_norm = None

    def _make_qk_norm(self, name):
        axis = -1 if self.qk_norm_per_head else [-2, -1]
        norm = RMSNormalization if self.qk_norm == "rms" else LayerNormalization
        return norm(axis=axis, epsilon=self.qk_norm_epsilon, dtype=self.dtype_policy, name=name)

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        if self.qk_norm is None:
            return
        key_shape = value_shape if key_shape is None else key_shape
        # The projected shapes, (batch, <tokens>, num_heads, key_dim).
        projected_query_shape = tuple(self._query_dense.compute_output_shape(tuple(query_shape)))
        projected_key_shape = tuple(self._key_dense.compute_output_shape(tuple(key_shape)))
        self.query_norm = self._make_qk_norm("query_norm")
        self.query_norm.build(projected_query_shape)
        self.key_norm = self._make_qk_norm("key_norm")
        self.key_norm.build(projected_key_shape)

    def _compute_attention(self, query, key, value, *args, **kwargs):
        # The projected query and key, (batch, <tokens>, num_heads, key_dim); the arguments after
        # them are those of the installed Keras (`attention_mask`, `training`,
        # `return_attention_scores`, and since Keras 3.15 `use_causal_mask`), passed on as given.
        if self.qk_norm is not None:
            query = self.query_norm(query)
            key = self.key_norm(key)
        return super()._compute_attention(query, key, value, *args, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "qk_norm": self.qk_norm,
            "qk_norm_per_head": self.qk_norm_per_head,
            "qk_norm_epsilon": self.qk_norm_epsilon,
        }
