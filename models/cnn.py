"""The paper's two convolutional examples, grown into full classifiers."""

from __future__ import annotations

import keras
from keras_norms.models._norm import make_norm


def _check_image_shape(model: str, input_shape, min_size: int) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"{model}: `input_shape` must be (height, width, channels) of positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    if min(shape[:2]) < min_size:
        raise ValueError(
            f"{model} needs images of at least {min_size}x{min_size} (its convolutions and pooling "
            f"shrink them); resize the data or pass a larger input_shape. Received: input_shape={shape}"
        )
    return shape


def paper_cnn(norm="batch", input_shape=(32, 32, 3), num_classes: int = 10, *, width: int = 64,
              **norm_options) -> keras.Sequential:
    """The paper's TensorFlow example as a classifier: three conv blocks, each followed by `norm`.

    ``Conv2D(w, 3x3, relu) -> norm -> MaxPool(2) -> Conv2D(2w, 3x3, relu) -> norm
    -> MaxPool(2) -> Conv2D(2w, 3x3, relu) -> norm -> Flatten -> Dense(2w, relu)
    -> Dense(num_classes)`` (logits), with `w = width` (the paper's 64). The
    head flattens rather than averages: the spatial mean of an instance-normalized
    map is just `beta`, so global average pooling would erase it.

    Args:
        norm: A registry name, a layer class or a callable returning a layer.
        input_shape: `(height, width, channels)`, at least 22x22 (the last
            feature map must be larger than 1x1 for per-example norms).
        num_classes: Number of output logits.
        width: Filters of the first convolution; the later ones have twice as many.
        **norm_options: Passed to every norm layer (e.g. `groups=8`, `momentum=0.9`).

    Returns:
        A new, uncompiled `keras.Sequential` named `"paper_cnn"` that returns logits.

    Raises:
        TypeError: `norm` is a layer instance (each position needs a new layer
            of its own), or neither a name nor a callable.
        ValueError: `input_shape` is not three positive ints or is smaller than
            22x22; `norm` is an unknown name, or a norm rejects `norm_options`
            or its input (e.g. `groups` not dividing the channels).

    Reference:
        - Wu and He, "Group Normalization", ECCV 2018.
          [arXiv:1803.08494](https://arxiv.org/abs/1803.08494) (the comparison
          of batch, layer, instance and group norm across batch sizes that the
          study repeats with this model)

    Examples:
        >>> import keras_norms
        >>> from keras_norms.models import paper_cnn
        >>> model = paper_cnn("group", groups=8)
        >>> norms = [layer for layer in model.layers if isinstance(layer, keras_norms.GroupNormalization)]
        >>> [norm.groups for norm in norms], model.output_shape
        ([8, 8, 8], (None, 10))
    """
    shape = _check_image_shape("paper_cnn", input_shape, 22)

    def block(filters, pool):
        conv = keras.layers.Conv2D(filters, 3, activation="relu")
        pooling = [keras.layers.MaxPooling2D(2)] if pool else []
        return [conv, make_norm(norm, filters, **norm_options), *pooling]

    return keras.Sequential(
        [keras.Input(shape), *block(width, True), *block(2 * width, True), *block(2 * width, False),
         keras.layers.Flatten(), keras.layers.Dense(2 * width, activation="relu"),
         keras.layers.Dense(num_classes)],
        name="paper_cnn",
    )


def lenet(norm="batch", input_shape=(32, 32, 1), num_classes: int = 10, **norm_options) -> keras.Sequential:
    """The paper's PyTorch example, LeNet-5 with a norm after each convolution.

    ``Conv2D(6, 5x5) -> norm -> ReLU -> MaxPool(2) -> Conv2D(16, 5x5) -> norm -> ReLU
    -> MaxPool(2) -> Flatten -> Dense(120, relu) -> Dense(84, relu) -> Dense(num_classes)``
    (logits; "valid" convolutions as in LeCun et al., 1998).

    Args:
        norm: A registry name, a layer class or a callable returning a layer.
        input_shape: `(height, width, channels)`, at least 16x16 (LeNet-5 takes 32x32).
        num_classes: Number of output logits.
        **norm_options: Passed to every norm layer.

    Returns:
        A new, uncompiled `keras.Sequential` named `"lenet"` that returns logits.

    Raises:
        TypeError: `norm` is a layer instance (each position needs a new layer
            of its own), or neither a name nor a callable.
        ValueError: `input_shape` is not three positive ints or is smaller than
            16x16; `norm` is an unknown name, or a norm rejects `norm_options`
            or its input.

    Reference:
        - LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to
          Document Recognition", Proceedings of the IEEE, 1998.
          [doi:10.1109/5.726791](https://doi.org/10.1109/5.726791)

    Examples:
        >>> from keras_norms.models import lenet
        >>> model = lenet("layer")
        >>> [type(layer).__name__ for layer in model.layers[:4]], model.output_shape
        (['Conv2D', 'LayerNormalization', 'ReLU', 'MaxPooling2D'], (None, 10))
    """
    shape = _check_image_shape("lenet", input_shape, 16)

    def block(filters):
        return [keras.layers.Conv2D(filters, 5), make_norm(norm, filters, **norm_options),
                keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]

    return keras.Sequential(
        [keras.Input(shape), *block(6), *block(16), keras.layers.Flatten(),
         keras.layers.Dense(120, activation="relu"), keras.layers.Dense(84, activation="relu"),
         keras.layers.Dense(num_classes)],
        name="lenet",
    )


def resnet(norm="batch", input_shape=(32, 32, 3), num_classes: int = 10, *, depth: int = 8,
           width: int = 16, **norm_options) -> keras.Model:
    """A CIFAR-style residual network (He et al., 2016) with `norm` after every convolution.

    A 3x3 stem, then three stages of `(depth - 2) / 6` basic blocks with `width`,
    `2 * width` and `4 * width` filters (the 2nd and 3rd stages halve the
    resolution; their first block has a 1x1 projection shortcut, also
    normalized), global average pooling and the logits. `depth=20` is ResNet-20.

    Args:
        norm: A registry name, a layer class or a callable returning a layer.
        input_shape: `(height, width, channels)`, at least 4x4.
        num_classes: Number of output logits.
        depth: `6 n + 2` for n >= 1: 8, 14, 20, 32, ...
        width: Filters of the first stage.
        **norm_options: Passed to every norm layer.

    Returns:
        A new, uncompiled functional `keras.Model` named `f"resnet{depth}"`
            that returns logits.

    Raises:
        TypeError: `norm` is a layer instance (each position needs a new layer
            of its own), or neither a name nor a callable.
        ValueError: `input_shape` is not three positive ints or is smaller than
            4x4; `depth` is not `6 n + 2` with n >= 1; `width` is not a
            positive int; `norm` is an unknown name, or a norm rejects
            `norm_options` or its input.

    Reference:
        - He, Zhang, Ren and Sun, "Deep Residual Learning for Image
          Recognition", CVPR 2016. [arXiv:1512.03385](https://arxiv.org/abs/1512.03385)

    Examples:
        >>> from keras_norms.models import resnet
        >>> model = resnet("group", depth=14, groups=4)
        >>> model.name, model.output_shape
        ('resnet14', (None, 10))
    """
    shape = _check_image_shape("resnet", input_shape, 4)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"resnet: `depth` must be 6 n + 2 with n >= 1 (8, 14, 20, ...). Received: depth={depth!r}"
        )
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"resnet: `width` must be a positive int. Received: width={width!r}")

    def conv_norm(x, filters, kernel, strides=1):
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return make_norm(norm, filters, **norm_options)(x)

    inputs = keras.Input(shape)
    x = keras.layers.ReLU()(conv_norm(inputs, width, 3))
    for stage in range(3):
        filters = width * 2**stage
        for block in range((depth - 2) // 6):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x if strides == 1 else conv_norm(x, filters, 1, strides)
            y = keras.layers.ReLU()(conv_norm(x, filters, 3, strides))
            y = conv_norm(y, filters, 3)
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=f"resnet{depth}")
