"""The `keras-norms` command."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys


def build_parser() -> argparse.ArgumentParser:
    from keras_norms import __version__

    parser = argparse.ArgumentParser(
        prog="keras-norms", description="Normalization layers for Keras 3: demos and tools."
    )
    parser.add_argument("--version", action="version", version=f"keras-norms {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the quick comparison on the digits, then an export of the best model: "
        "`keras-norms compare --quick --out OUT --export-best` (what `make demo` runs)",
        description="Train batch, layer and group norm and no norm (LeNet on scikit-learn's digits, batch "
        "sizes 2 and 64, 3 epochs: about a minute on 2 CPU cores), print the verdicts and the table, write "
        "the report to OUT, and export the best run's model to OUT/export (SavedModel and TFLite, verified). "
        "The same as `keras-norms compare --quick --out OUT --export-best`; run again, it trains nothing "
        "new and exports again.",
    )
    demo.add_argument("--out", default="demo-out", help="results folder (default: demo-out)")
    demo.add_argument("--no-progress", action="store_true",
                      help="print one line per run instead of a progress bar")
    from keras_norms.export import cli as export_cli

    export_cli.add_parser(commands)
    from keras_norms.study import cli as compare_cli

    compare_cli.add_parser(commands)
    compare_cli.add_report_parser(commands)
    return parser


def demo_arguments(args) -> list[str]:
    """`keras-norms demo`'s arguments as those of the `compare` command it runs."""
    return ["compare", "--quick", "--out", args.out, "--export-best", *(["--no-progress"] * args.no_progress)]


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
    # Parsing imports neither Keras nor TensorFlow (`keras-norms --help` and `report` run without them:
    # _keras_norms_cli.py); each command imports what it needs.
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "export":
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            # SavedModel and TFLite are TensorFlow formats: the exporter runs on TensorFlow (the backend
            # is fixed when Keras is imported, so in a new process), and a `.keras` file saved on any
            # backend loads there.
            print(f"keras-norms export: KERAS_BACKEND={backend} is set; exporting on TensorFlow.",
                  file=sys.stderr, flush=True)
            env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
            # Through the command's entry point, which hides TensorFlow's start-up lines
            # (_keras_norms_cli.py).
            module = "_keras_norms_cli" if importlib.util.find_spec("_keras_norms_cli") else "keras_norms.cli"
            return subprocess.call([sys.executable, "-m", module, *argv], env=env)
        from keras_norms.export import cli as export_cli

        return export_cli.run(args)
    if args.command == "compare":
        from keras_norms.study import cli as compare_cli

        return compare_cli.run(args, export=_export_best)
    if args.command == "report":
        from keras_norms.study import cli as compare_cli

        return compare_cli.run_report(args)
    if args.command == "demo":
        from keras_norms.study import cli as compare_cli

        return compare_cli.run(build_parser().parse_args(demo_arguments(args)), export=_export_best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
