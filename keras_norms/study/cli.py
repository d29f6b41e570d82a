"""`keras-norms compare`: the comparison study from the command line.

`add_parser` only declares arguments (no TensorFlow import, so `--help` is
instant); `run` checks everything before it writes anything, then runs the grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from keras_norms.study.grid import (
    LR_SCALINGS,
    OPTIMIZERS,
    PLACEMENTS,
    PROTOCOLS,
    QK_NORMS,
    QUICK,
    TRANSFORMER_DEPTH,
    GridSpec,
)

PROG = "keras-norms compare"


def _list(kind, name: str):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {name}, got {text!r}")
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            message = f"expected a comma-separated list of {name}, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
    return parse


def _norms(text: str) -> tuple[str, ...]:
    """Comma-separated norms; commas inside a variant's parentheses do not split it."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items = [t.strip() for t in [*items, current] if t.strip()]
    if not items or depth != 0:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of norms, got {text!r}")
    return tuple(items)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _groups(text: str):
    return "auto" if text == "auto" else _positive(text)


def _shape(text: str) -> tuple[int, ...]:
    return _list(_positive, "positive ints")(text)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `compare` subcommand to `subparsers` (from `ArgumentParser.add_subparsers`)."""
    default = GridSpec()
    join = lambda values: ",".join(map(str, values))
    parser = subparsers.add_parser(
        "compare",
        help="compare norms over a grid of batch sizes and hyper-parameters; write tables, plots, verdicts",
        description="Train a model with each norm over a grid (norms x batch sizes x learning rates x BN "
        "momentum x groups x seeds) and write results.csv, results.json, report.md and PNG plots to "
        "--out. Finished cells are saved at once: run the same command again to resume. On a cluster, "
        "--shard K/N (or --shards N in a SLURM array or Kubernetes Indexed Job) runs every N-th cell into a "
        "shared --out, and `keras-norms report OUT` merges the shards.",
    )
    add = parser.add_argument
    add("--model", default=None,
        help=f"paper_cnn, lenet, resnet, sequence or transformer (default: {default.model})")
    add("--dataset", default=None,
        help="digits, seq-digits, mnist, fashion_mnist, cifar10, cifar100, imdb (word ids) or images "
        f"(a folder given with --data-dir) (default: {default.dataset})")
    add("--data-dir", default=None,
        help="a folder with the data set's files, e.g. mnist.npz or cifar-10-batches-py/ (default: "
        "Keras' cache, $KERAS_HOME/datasets or ~/.keras/datasets, downloading what is missing unless "
        "KERAS_NORMS_OFFLINE=1); for images: one subfolder of images per class, or train/ and test/ "
        "holding them")
    add("--norms", type=_norms,
        help="registry names, or variants with arguments labelled as written, e.g. batch,"
        "batch(renorm=True),batch(virtual_batch_size=4),group(groups=8) "
        f"(default: {join(default.norms)})")
    add("--batch-sizes", type=_list(_positive, "positive ints"),
        help=f"default: {join(default.batch_sizes)}")
    add("--epochs", type=_positive, help=f"epochs per cell (default: {default.epochs})")
    add("--seeds", type=_list(int, "ints"),
        help=f"seeds of weights and shuffling (default: {join(default.seeds)})")
    add("--lr", dest="lrs", type=_list(float, "floats"),
        help=f"Adam learning rates (default: {join(default.lrs)})")
    add("--lr-scaling", choices=LR_SCALINGS, default=None,
        help="linear: learning rate x batch size / 32 (default: none)")
    add("--optimizer", choices=OPTIMIZERS, default=None,
        help=f"adam, or sgd (momentum 0.9) (default: {default.optimizer})")
    add("--placement", dest="placements", type=_list(str, f"{' or '.join(PLACEMENTS)}"),
        help="the transformer's norm placement: pre, post, peri or deepnorm, or several, e.g. pre,peri "
             "(default: pre)")
    add("--qk-norm", dest="qk_norms", type=_list(str, f"{' or '.join(QK_NORMS)}"),
        help="the transformer's QK-norm (queries and keys normalized per head): none, rms or layer, or "
             "several, e.g. none,rms (default: none)")
    add("--warmup", dest="warmups", type=_list(_non_negative, "ints >= 0"),
        help="epochs of linear learning-rate warm-up (from ~0 to the learning rate, step by step), or "
             "several, e.g. 0,1 (default: 0)")
    add("--depth", type=_positive, default=None,
        help=f"the transformer's number of blocks (default: {TRANSFORMER_DEPTH})")
    add("--protocol", choices=sorted(PROTOCOLS), default=None,
        help="gn-paper: Wu and He's (2018) protocol: batch sizes 32,16,8,4,2, SGD with momentum 0.9 and the "
        "learning rate 0.1 scaled linearly with the batch size, batch/group/layer/instance norm, 3 seeds; "
        "the report prints their published ImageNet errors beside ours (explicit options still apply)")
    add("--bn-momentum", dest="bn_momentums", type=_list(float, "floats"),
        help=f"batch norm momentum values (default: {join(default.bn_momentums)})")
    add("--groups", type=_list(_groups, "positive ints or auto"),
        help="group norm group counts; auto: the largest divisor of each layer's channels up to 32 "
        "leaving 2+ channels per group (default: auto)")
    add("--target-accuracy", type=float, default=None,
        help="validation accuracy that counts as converged "
        "(default: 0.9 digits, 0.85 seq-digits, 0.5 cifar10)")
    add("--input-shape", type=_shape, default=None,
        help="model input, e.g. 16,16,1 (default: the model's own; the data is resized to it)")
    add("--train-size", type=_positive, default=None, help="use a seeded subset of the training set")
    add("--quick", action="store_true",
        help=f"a one-minute grid: norms {join(QUICK['norms'])}, batch sizes {join(QUICK['batch_sizes'])}, "
        f"{QUICK['epochs']} epochs, one seed (explicit options still apply)")
    add("--out", default="out", help="results folder (default: out)")
    add("--force", action="store_true", help="retrain cells already finished in --out")
    add("--shard", metavar="K/N", default=None,
        help="run only shard K of N: the cells whose index in the grid is K mod N (writes no report and no "
        "model; `keras-norms report OUT` merges the shards)")
    add("--shards", metavar="N", nargs="?", const="auto", default=None,
        help="run shard K of N with K from the job array: SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) "
        "or JOB_COMPLETION_INDEX (Kubernetes Indexed Job); without N, N is SLURM_ARRAY_TASK_COUNT")
    add("--no-progress", action="store_true", help="print one line per cell instead of a progress bar")
    add("--export-best", action="store_true",
        help="export the best run's model (best_model.keras) to --out/export: SavedModel and TFLite, "
        "verified against Keras, with its accuracy on the test set")
    return parser


def spec_from_args(args) -> GridSpec:
    """The grid: the default (or `--quick`, or `--protocol`) preset, overridden by every option given."""
    values = dict(QUICK) if args.quick else {}
    if getattr(args, "protocol", None):
        values.update(PROTOCOLS[args.protocol], protocol=args.protocol)
    for field in dataclasses.fields(GridSpec):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    return GridSpec(**values)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args, export=None) -> int:
    """Checks the arguments, runs the grid and prints the verdicts and the table; returns the exit code.

    `export(model_path, directory, data)` exports the best run's model for `--export-best` and
    returns the exit code: the `keras-norms` command passes it, so that the study does not import
    the exporter (`keras_norms.export`).
    """
    import os

    from keras_norms.study.datasets import DataError
    from keras_norms.study.grid import GridError, check_models, check_names
    from keras_norms.study.shards import ShardError, claim_grid, grid_record, resolve_shard
    from keras_norms.study.store import StoreError, check_out_dir

    spec = spec_from_args(args)
    try:
        shard = resolve_shard(args.shard, args.shards, os.environ)
    except ShardError as error:
        return _fail(str(error))
    array = [f"{k}={os.environ[k]}" for k in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")
             if k in os.environ]
    if shard is None and array:
        print(f"{PROG}: note: {array[0]} is set, but without --shards this process runs the whole grid",
              file=sys.stderr)
    if shard is not None and args.export_best:
        return _fail(f"--export-best needs an unsharded run, and this is shard {shard}: a shard keeps no "
                     "model; export the best configuration from a run of its own")
    if args.export_best and export is None:
        return _fail("--export-best needs an exporter: run `keras-norms compare`, which passes it")
    try:
        check_names(spec)
        check_out_dir(args.out)
        from keras_norms.study.runner import data_description
        from keras_norms.study.training import prepare

        prepared = prepare(spec)
        check_models(spec, prepared.input_shape, prepared.num_classes, prepared.model_options)
        record = grid_record(spec, prepared.input_shape, prepared.target_accuracy, data_description(prepared))
        claim_grid(args.out, record, strict=shard is not None)
    except (GridError, DataError, StoreError) as error:
        return _fail(str(error))

    from keras_norms.study.report import summary_text
    from keras_norms.study.runner import run_grid

    cells = spec.cells(input_shape=prepared.input_shape, target_accuracy=prepared.target_accuracy)
    mine = len(cells) if shard is None else len(shard.select(cells))
    part = "" if shard is None else f"shard {shard}, {mine} of "
    print(f"Comparing {len(spec.norms)} norms with {spec.model} on {spec.dataset} "
          f"({len(prepared.data.y_train)} training examples, input {prepared.input_shape}): "
          f"{part}{len(cells)} runs of {spec.epochs} epochs; results in {args.out}/", flush=True)
    try:
        summary = run_grid(spec, prepared, args.out, force=args.force, progress=not args.no_progress,
                           shard=shard)
    except KeyboardInterrupt:
        print(f"\nInterrupted. Every finished run is saved in {args.out}/; run the same command "
              "again to resume.", file=sys.stderr)
        return 130
    if summary.skipped:
        print(f"{summary.skipped} of {mine} runs were already finished in {args.out}/ and were not "
              "retrained (--force retrains them).")
    if summary.duplicates:
        print(f"{summary.duplicates} runs were finished by another process while this one trained them; "
              "the first result was kept.")
    if shard is not None:
        print(f"Shard {shard} is done: {len(summary.rows)} of {len(cells)} runs of the grid are finished in "
              f"{args.out}/. `keras-norms report {args.out}` merges them into report.md.")
        return 0
    print()
    print(summary_text(summary.rows, prepared.target_accuracy))
    print(f"\nReport: {summary.report_path}")
    if args.export_best:
        return _export_best(args.out, prepared, export)
    return 0


def _export_best(out, prepared, export) -> int:
    """Exports `best_model.keras` of `out` to `out/export` with `export` (see `run`)."""
    import json
    import pathlib

    from keras_norms.study.runner import BEST_MODEL, BEST_MODEL_INFO

    out = pathlib.Path(out)
    if not (out / BEST_MODEL).exists():
        return _fail(f"no {BEST_MODEL} in {out}/ to export: run the grid once without --export-best first")
    info = json.loads((out / BEST_MODEL_INFO).read_text())
    config = info["configuration"]
    print(f"\nExporting the best run ({config.get('norm')} norm, batch size {config.get('batch_size')}, "
          f"test accuracy {info['test_accuracy']:.3f}) to {out / 'export'}/")
    return export(out / BEST_MODEL, out / "export", prepared.data)


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `report` subcommand to `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "report",
        help="merge the finished cells of a `keras-norms compare` folder (e.g. of shards) into its report",
        description="Merge the cells finished in OUT (by `keras-norms compare`, sharded or not, possibly "
        "still running) into results.csv, results.json, report.md and the plots, and list the cells of "
        "the grid still missing. Exit code 0 when a report was written, 1 when no cell is finished yet.",
    )
    parser.add_argument("out", metavar="OUT", help="the --out folder of keras-norms compare")
    return parser


def run_report(args) -> int:
    """Merges `args.out`; prints the verdicts, the table and the missing cells; returns the exit code."""
    from keras_norms.study.merge import describe_cell, merge_folder
    from keras_norms.study.report import summary_text
    from keras_norms.study.store import StoreError

    try:
        merged = merge_folder(args.out)
    except StoreError as error:
        print(f"keras-norms report: error: {error}", file=sys.stderr)
        return 2
    if merged.rows:
        print(summary_text(merged.rows, merged.target_accuracy))
        print(f"\nReport: {merged.report_path} ({len(merged.rows)} of {len(merged.cells)} runs)")
    if merged.missing:
        print(f"\n{len(merged.missing)} of {len(merged.cells)} runs are missing "
              "(cell index in the grid: shard K of N runs the indices equal to K mod N):")
        for index, cell in merged.missing:
            print(f"  {index}: {describe_cell(cell)}")
    else:
        print(f"All {len(merged.cells)} runs of the grid are finished.")
    return 0 if merged.rows else 1
