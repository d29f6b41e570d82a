"""The `keras-norms` command."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

from keras_norms.cli_args import norm_list, positive_int


def build_parser() -> argparse.ArgumentParser:
    from keras_norms import __version__

    parser = argparse.ArgumentParser(
        prog="keras-norms", description="Normalization layers for Keras 3: demos and tools."
    )
    parser.add_argument("--version", action="version", version=f"keras-norms {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train a small CNN on scikit-learn's digits with each core norm and print a table"
    )
    demo.add_argument("--norms", type=norm_list,
                      default=["batch", "layer", "group", "instance", "rms", "none"],
                      help="comma-separated registry names (default: all six core norms)")
    demo.add_argument("--epochs", type=positive_int, default=8, help="epochs per norm (default: 8)")
    demo.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default: 32)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and the weights (default: 0)")
    from keras_norms.export import cli as export_cli

    export_cli.add_parser(commands)
    from keras_norms.study import cli as compare_cli

    compare_cli.add_parser(commands)
    compare_cli.add_report_parser(commands)
    return parser


def _export_best(model_path, directory, data) -> int:
    """`keras-norms compare --export-best`: exports the best run's model with the study's data.

    The study's CLI calls it (`keras_norms.study.cli.run`): the study and the exporter stay
    independent, and this command, above both, joins them.
    """
    import keras

    from keras_norms.export import ExportError, export_model

    try:
        result = export_model(keras.models.load_model(model_path), directory, overwrite=True,
                              representative_data=data.x_val[:256], eval_data=(data.x_test, data.y_test))
    except ExportError as error:
        print(f"keras-norms compare: error: exporting {model_path} failed: {error}", file=sys.stderr)
        return 2
    print(result.table())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    import keras

    backend = keras.backend.backend()
    if argv[:1] == ["export"] and backend != "tensorflow":
        # SavedModel and TFLite are TensorFlow formats: the exporter runs on TensorFlow (the backend
        # is fixed when Keras is imported, so in a new process), and a `.keras` file saved on any
        # backend loads there.
        print(f"keras-norms export: KERAS_BACKEND={backend} is set; exporting on TensorFlow.",
              file=sys.stderr, flush=True)
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        # Through the command's entry point, which hides TensorFlow's start-up lines (_keras_norms_cli.py).
        module = "_keras_norms_cli" if importlib.util.find_spec("_keras_norms_cli") else "keras_norms.cli"
        return subprocess.call([sys.executable, "-m", module, *argv], env=env)
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "export":
        from keras_norms.export import cli as export_cli

        return export_cli.run(args)
    if args.command == "compare":
        from keras_norms.study import cli as compare_cli

        return compare_cli.run(args, export=_export_best)
    if args.command == "report":
        from keras_norms.study import cli as compare_cli

        return compare_cli.run_report(args)
    if args.command == "demo":
        import keras_norms
        from keras_norms.study.demo import format_results, run_demo

        unknown = [n for n in args.norms if n.strip().lower() not in keras_norms.names()]
        if unknown:
            print(f"keras-norms demo: unknown norm(s) {', '.join(unknown)}; valid names: "
                  f"{', '.join(keras_norms.names())}", file=sys.stderr)
            return 2
        print(f"Training a small CNN on scikit-learn's digits, {args.epochs} epochs per norm, "
              f"batch size {args.batch_size}.", flush=True)
        results = run_demo(args.norms, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
