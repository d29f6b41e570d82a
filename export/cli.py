"""`keras-norms export MODEL.keras --out DIR`: the exporter on the command line."""

from __future__ import annotations

import argparse
import os
import sys

from keras_norms.cli_args import positive_int

QUANTIZE_CHOICES = ("int8", "float16", "dynamic")


def _batch_size(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `export` subcommand to the `keras-norms` parser's subparsers."""
    parser = subparsers.add_parser(
        "export",
        help="export a .keras (or tf.keras 2 .h5) model to SavedModel and TFLite (verified against Keras)",
        description="Writes DIR/saved_model, DIR/model.tflite (and a quantized variant) and "
                    "DIR/manifest.json, verified against the Keras model, then prints a table.",
    )
    parser.add_argument("model", help="the model file: .keras, or a tf.keras 2 .h5 (tfa layers included)")
    parser.add_argument("--out", required=True, help="the export directory (must not exist)")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES,
                        help="also write a quantized TFLite file (int8 needs --calibration)")
    parser.add_argument("--calibration", metavar="digits|FILE.npz",
                        help="representative inputs: scikit-learn's digits fitted to the model's input, "
                             "or a .npz file with 'x' (one array per input name for several inputs) "
                             "and optional labels 'y'")
    parser.add_argument("--batch-size", type=_batch_size, default=1,
                        help="static batch size of the exported model (default: 1); 'none' keeps it dynamic")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _load_model(path: str):
    import keras
    import keras_norms.export  # noqa: F401  (registers keras_norms' layers and ChannelAffine)

    if not os.path.isfile(path):
        raise ValueError(f"model file {path!r} not found")
    try:
        # Without the training config: export needs no optimizer, and a tf.keras 2 file's loss
        # (`reduction="auto"`) would not load under Keras 3.
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # a damaged or foreign file: report it as one line
        raise ValueError(f"cannot load {path!r} as a Keras model: {_one_line(error)}") from error


def _calibration(args, model):
    from keras_norms.export import calibration, signature

    if args.calibration is None:
        if args.quantize == "int8":
            raise ValueError("--quantize int8 needs --calibration digits or --calibration FILE.npz")
        return None, None
    infos = signature.model_inputs(model, args.batch_size)
    if args.calibration == "digits":
        if len(infos) != 1:
            raise ValueError("--calibration digits fits single-input models; pass a .npz file instead")
        representative, (x_test, y_test) = calibration.digits_data(infos[0].shape[1:])
        outputs = model.outputs
        is_digit_classifier = len(outputs) == 1 and outputs[0].shape[-1] == 10
        return representative, ((x_test, y_test) if is_digit_classifier else None)
    if not os.path.isfile(args.calibration):
        raise ValueError(
            f"--calibration must be 'digits' or an existing .npz file; {args.calibration!r} is neither"
        )
    inputs, labels = calibration.load_npz(args.calibration, [info.name for info in infos])
    return inputs, ((inputs, labels) if labels is not None else None)


def run(args: argparse.Namespace) -> int:
    """Runs `keras-norms export`; returns the exit status (2 with a one-line error on failure)."""
    from keras_norms.export import ExportError, export_model

    try:
        model = _load_model(args.model)
        representative, eval_data = _calibration(args, model)
        result = export_model(
            model, args.out, quantize=args.quantize, representative_data=representative,
            batch_size=args.batch_size, overwrite=args.overwrite, eval_data=eval_data,
        )
    except FileExistsError:
        print(f"keras-norms export: error: {args.out} already exists; pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    except (ValueError, OSError, ExportError) as error:
        print(f"keras-norms export: error: {_one_line(error)}", file=sys.stderr)
        return 2
    folded = sum(r.folded_into is not None for r in result.batch_norms)
    print(f"Exported {args.model} to {result.directory} (batch norms: {folded} folded, "
          f"{len(result.batch_norms) - folded} as multiply-add).")
    print(result.table())
    return 0
