"""Recurrent cells with layer normalization inside: the paper's "layer norm for RNNs".

They are norm layers, exported by `keras_norms` (`keras_norms.LayerNormLSTMCell`,
`keras_norms.LayerNormSimpleRNNCell`); `keras_norms.models` still imports them under their
former names. They are registered as `keras_norms>LayerNormLSTMCell` and
`keras_norms>LayerNormSimpleRNNCell`, as they always were, so the `.keras` files that hold them load.
"""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers

from keras_norms._checks import check_count, check_epsilon, get_constraint, get_initializer, get_regularizer
from keras_norms.layer import LayerNormalization


def _single_mask(mask):
    # Keras' LSTMCell caches four masks (one per gate) when recurrent_dropout is set; this cell
    # computes the four gates in one product, so it uses one mask for all of them.
    return mask[0] if isinstance(mask, (list, tuple)) else mask


@keras.saving.register_keras_serializable(package="keras_norms")
class LayerNormLSTMCell(keras.layers.LSTMCell):
    r"""LSTM cell with layer normalization of the gate pre-activations and of the cell state.

    The successor of tensorflow-addons' `LayerNormLSTMCell` (same arguments,
    config keys and weights). With
    $\operatorname{LN}(v) = \gamma \, \frac{v - \mu(v)}{\sqrt{\sigma^2(v) + \epsilon}} + \beta$
    over the last axis ($\epsilon$ the `norm_epsilon`; three norms, each with
    its own $\gamma$ and $\beta$) and the gates in Keras' order (input,
    forget, candidate, output), a step computes the `4 * units`
    pre-activations $z$, then the states:

    $$
    \begin{aligned}
    z &= \operatorname{LN}_x(x_t W) + \operatorname{LN}_h(h_{t-1} U) + b,
    \qquad [i, f, g, o] = \operatorname{split}(z, 4), \\
    c_t &= \operatorname{LN}_c\big(\sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g)\big), \\
    h_t &= \sigma(o) \odot \tanh(c_t).
    \end{aligned}
    $$

    ($\sigma$ is `recurrent_activation` and $\tanh$ is `activation`, their
    defaults.) As in tensorflow-addons (and TensorFlow 1's
    `LayerNormBasicLSTMCell`), the normalized cell state is the one carried to
    the next step. Layer norm makes the recurrence independent of the scale
    of the summed inputs, which steadies and speeds up training of recurrent
    networks; it needs no batch statistics, so it works with any batch size and
    sequence length. Use it in `keras.layers.RNN`.

    Args:
        units: Positive int, size of the output and of both states.
        norm_gamma_initializer: Initializer of the three norms' gamma.
        norm_beta_initializer: Initializer of the three norms' beta.
        norm_epsilon: Small float added to the variances, > 0.
        **kwargs: The arguments of `keras.layers.LSTMCell` (below) and base
            layer arguments (`name`, `dtype`, ...).

    Keyword Args:
        activation: As in `keras.layers.LSTMCell` (default `"tanh"`).
        recurrent_activation: As in `keras.layers.LSTMCell` (default `"sigmoid"`).
        use_bias: As in `keras.layers.LSTMCell`.
        kernel_initializer: As in `keras.layers.LSTMCell`.
        recurrent_initializer: As in `keras.layers.LSTMCell`.
        bias_initializer: As in `keras.layers.LSTMCell`.
        unit_forget_bias: As in `keras.layers.LSTMCell`.
        kernel_regularizer: As in `keras.layers.LSTMCell`.
        recurrent_regularizer: As in `keras.layers.LSTMCell`.
        bias_regularizer: As in `keras.layers.LSTMCell`.
        kernel_constraint: As in `keras.layers.LSTMCell`.
        recurrent_constraint: As in `keras.layers.LSTMCell`.
        bias_constraint: As in `keras.layers.LSTMCell`.
        dropout: As in `keras.layers.LSTMCell`; one mask serves all four gates.
        recurrent_dropout: As in `keras.layers.LSTMCell`; one mask serves all four gates.
        seed: As in `keras.layers.LSTMCell`.

    Call arguments:
        inputs: `(batch, features)`, one time step.
        states: `[h, c]`, each `(batch, units)`.
        training: Python bool; only dropout looks at it.

    Input shape:
        inputs: `(batch, features)`, one time step; in `keras.layers.RNN`,
            sequences `(batch, time, features)`.
        states: `[h, c]`, each `(batch, units)`.

    Output shape:
        `(batch, units)`, and the states `[h, c]`, each `(batch, units)`.

    Returns:
        The step's output and new states as `(h, [h, c])`, each `(batch, units)`.

    Raises:
        TypeError: `norm_epsilon` is not a number, or `units` is not an int.
        ValueError: `norm_epsilon` is not finite and > 0, `units` is < 1, or
            Keras cannot interpret `norm_gamma_initializer` or
            `norm_beta_initializer`.

    Reference:
        - Ba, Kiros and Hinton, "Layer Normalization", 2016.
          [arXiv:1607.06450](https://arxiv.org/abs/1607.06450)

    Examples:
        >>> import keras
        >>> from keras_norms import LayerNormLSTMCell
        >>> cell = LayerNormLSTMCell(16)
        >>> rnn = keras.layers.RNN(cell)
        >>> tuple(rnn(keras.random.normal((4, 7, 3))).shape)
        (4, 16)
        >>> ["/".join(weight.path.split("/")[-2:]) for weight in cell.weights[3:]]
        ['kernel_norm/gamma', 'kernel_norm/beta', 'recurrent_norm/gamma', 'recurrent_norm/beta',
         'state_norm/gamma', 'state_norm/beta']
    """

    def __init__(self, units: int, *, norm_gamma_initializer="ones", norm_beta_initializer="zeros",
                 norm_epsilon: float = 1e-3, **kwargs):
        super().__init__(check_count("units", units), **kwargs)
        self.norm_gamma_initializer = get_initializer("norm_gamma_initializer", norm_gamma_initializer)
        self.norm_beta_initializer = get_initializer("norm_beta_initializer", norm_beta_initializer)
        self.norm_epsilon = check_epsilon(norm_epsilon, "norm_epsilon")
        self.kernel_norm = self._norm_layer("kernel_norm")
        self.recurrent_norm = self._norm_layer("recurrent_norm")
        self.state_norm = self._norm_layer("state_norm")

    def _norm_layer(self, name: str) -> LayerNormalization:
        return LayerNormalization(
            epsilon=self.norm_epsilon,
            gamma_initializer=initializers.serialize(self.norm_gamma_initializer),
            beta_initializer=initializers.serialize(self.norm_beta_initializer),
            name=name,
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        super().build(input_shape)
        batch = input_shape[0]
        self.kernel_norm.build((batch, 4 * self.units))
        self.recurrent_norm.build((batch, 4 * self.units))
        self.state_norm.build((batch, self.units))

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * _single_mask(self.get_dropout_mask(inputs))
        if training and 0.0 < self.recurrent_dropout < 1.0:
            h_prev = h_prev * _single_mask(self.get_recurrent_dropout_mask(h_prev))
        z = self.kernel_norm(ops.matmul(inputs, self.kernel))
        z = z + self.recurrent_norm(ops.matmul(h_prev, self.recurrent_kernel))
        if self.use_bias:
            z = z + self.bias
        c, o = self._compute_carry_and_output_fused(ops.split(z, 4, axis=-1), c_prev)
        c = self.state_norm(c)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = {
            "norm_gamma_initializer": initializers.serialize(self.norm_gamma_initializer),
            "norm_beta_initializer": initializers.serialize(self.norm_beta_initializer),
            "norm_epsilon": self.norm_epsilon,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="keras_norms")
class LayerNormSimpleRNNCell(keras.layers.SimpleRNNCell):
    r"""Simple RNN cell with layer normalization (scale only) of the pre-activation.

    The successor of tensorflow-addons' `LayerNormSimpleRNNCell` (same
    arguments, config keys and weights: `kernel`, `recurrent_kernel`, `bias`,
    then the `gamma` of its `layernorm` sublayer). With
    $\operatorname{LN}(v) = \gamma \, \frac{v - \mu(v)}{\sqrt{\sigma^2(v) + \epsilon}}$
    over the units ($\epsilon$ the `layernorm_epsilon`):

    $$
    y_t = \operatorname{activation}\big(\operatorname{LN}(x_t W + y_{t-1} U) + b\big).
    $$

    The bias is added after the norm, as in tensorflow-addons: the norm has no
    offset of its own, `b` plays that role. Dropout masks are Keras'
    `SimpleRNNCell`'s. Use it in `keras.layers.RNN`.

    Args:
        units: Positive int, size of the output and of the state.
        layernorm_epsilon: Small float added to the variance, > 0.
        gamma_initializer: Initializer of the norm's gamma.
        gamma_regularizer: Optional regularizer of the norm's gamma.
        gamma_constraint: Optional constraint of the norm's gamma.
        **kwargs: The arguments of `keras.layers.SimpleRNNCell` (below) and
            base layer arguments (`name`, `dtype`, ...).

    Keyword Args:
        activation: As in `keras.layers.SimpleRNNCell` (default `"tanh"`).
        use_bias: As in `keras.layers.SimpleRNNCell`.
        kernel_initializer: As in `keras.layers.SimpleRNNCell`.
        recurrent_initializer: As in `keras.layers.SimpleRNNCell`.
        bias_initializer: As in `keras.layers.SimpleRNNCell`.
        kernel_regularizer: As in `keras.layers.SimpleRNNCell`.
        recurrent_regularizer: As in `keras.layers.SimpleRNNCell`.
        bias_regularizer: As in `keras.layers.SimpleRNNCell`.
        kernel_constraint: As in `keras.layers.SimpleRNNCell`.
        recurrent_constraint: As in `keras.layers.SimpleRNNCell`.
        bias_constraint: As in `keras.layers.SimpleRNNCell`.
        dropout: As in `keras.layers.SimpleRNNCell`.
        recurrent_dropout: As in `keras.layers.SimpleRNNCell`.
        seed: As in `keras.layers.SimpleRNNCell`.

    Call arguments:
        inputs: `(batch, features)`, one time step.
        states: `[y_{t-1}]`, `(batch, units)` (or the tensor itself).
        training: Python bool; only dropout looks at it.

    Input shape:
        inputs: `(batch, features)`, one time step; in `keras.layers.RNN`,
            sequences `(batch, time, features)`.
        states: `[y_{t-1}]`, `(batch, units)`.

    Output shape:
        `(batch, units)`, and the state `[y_t]`, `(batch, units)`.

    Returns:
        The step's output and new state as `(y_t, [y_t])`, each `(batch, units)`
            (`(y_t, y_t)` when `states` is a tensor).

    Raises:
        TypeError: `layernorm_epsilon` is not a number, or `units` is not an int.
        ValueError: `layernorm_epsilon` is not finite and > 0, `units` is < 1,
            or Keras cannot interpret the gamma initializer, regularizer or
            constraint.

    Reference:
        - Ba, Kiros and Hinton, "Layer Normalization", 2016.
          [arXiv:1607.06450](https://arxiv.org/abs/1607.06450)

    Examples:
        >>> import keras
        >>> from keras_norms import LayerNormSimpleRNNCell
        >>> rnn = keras.layers.RNN(LayerNormSimpleRNNCell(4), return_sequences=True)
        >>> tuple(rnn(keras.random.normal((2, 7, 3))).shape)
        (2, 7, 4)
    """

    def __init__(self, units: int, *, layernorm_epsilon: float = 1e-5, gamma_initializer="ones",
                 gamma_regularizer=None, gamma_constraint=None, **kwargs):
        layernorm_epsilon = check_epsilon(layernorm_epsilon, "layernorm_epsilon")
        super().__init__(check_count("units", units), **kwargs)
        self.layernorm_epsilon = layernorm_epsilon
        self.gamma_initializer = get_initializer("gamma_initializer", gamma_initializer)
        self.gamma_regularizer = get_regularizer("gamma_regularizer", gamma_regularizer)
        self.gamma_constraint = get_constraint("gamma_constraint", gamma_constraint)
        self.layernorm = LayerNormalization(
            epsilon=self.layernorm_epsilon,
            center=False,
            gamma_initializer=initializers.serialize(self.gamma_initializer),
            gamma_regularizer=self.gamma_regularizer,
            gamma_constraint=self.gamma_constraint,
            name="layernorm",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.layernorm.build((input_shape[0], self.units))

    def call(self, inputs, states, training=False):
        previous = states[0] if isinstance(states, (list, tuple)) else states
        input_mask = self.get_dropout_mask(inputs)
        recurrent_mask = self.get_recurrent_dropout_mask(previous)
        if training and input_mask is not None:
            inputs = inputs * input_mask
        if training and recurrent_mask is not None:
            previous = previous * recurrent_mask
        outputs = ops.matmul(inputs, self.kernel) + ops.matmul(previous, self.recurrent_kernel)
        outputs = self.layernorm(outputs)
        if self.bias is not None:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs, ([outputs] if isinstance(states, (list, tuple)) else outputs)

    def get_config(self):
        config = {
            "layernorm_epsilon": self.layernorm_epsilon,
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}
