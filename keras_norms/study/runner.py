"""The comparison loop: train every unfinished cell (of the grid, or of one shard), save each at once."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable

from keras_norms.study.grid import Cell, GridSpec
from keras_norms.study.merge import host_description, ordered_rows, write_outputs
from keras_norms.study.shards import Shard
from keras_norms.study.store import CellStore, ResultsStore, atomic_write
from keras_norms.study.training import Prepared, train_cell

#: The progress bar's cost model of a cell, in units of one small training step (about 2.5 ms on
#: 2 CPU cores): each step, plus a share per example, plus building, tracing and evaluating.
#: It only shapes the ETA, which then accounts for the many cheap steps of small batches.
EXAMPLE_COST = 0.08
CELL_COST = 1200

TrainFn = Callable[[Cell, Prepared, Callable[[int], None], pathlib.Path | None], dict]

#: The model of the best cell trained by unsharded runs (highest test accuracy), and which cell it is.
BEST_MODEL = "best_model.keras"
BEST_MODEL_INFO = "best_model.json"


@dataclasses.dataclass
class RunSummary:
    """What a run did: cells trained now, cells found finished, and the finished rows of the whole grid.

    `duplicates` counts cells this process trained while another process
    (a repeated shard) finished them first: the other result was kept.
    `report_path` is None for a shard (`keras-norms report` merges the shards).
    """

    trained: int
    skipped: int
    rows: list[dict]
    report_path: pathlib.Path | None
    duplicates: int = 0


def data_description(prepared: Prepared) -> str:
    """The sizes of the splits, as the report states them."""
    data = prepared.data
    return (f"{len(data.y_train)} training, {len(data.y_val)} validation and "
            f"{len(data.y_test)} test examples")


class _Progress:
    """A progress bar over the grid (stderr), weighted by training steps, with an ETA."""

    def __init__(self, cells: list[Cell], train_size: int, enabled: bool):
        from tqdm.auto import tqdm

        self.epoch_cost = {c.key: math.ceil(train_size / c.batch_size) + EXAMPLE_COST * train_size
                           for c in cells}
        total = sum(c.epochs * self.epoch_cost[c.key] + CELL_COST for c in cells)
        self.count, self.done = len(cells), 0
        self.bar = tqdm(total=total, disable=not enabled or not cells, file=sys.stderr, dynamic_ncols=True,
                        desc=f"cell 1/{len(cells)}",
                        bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self.write = tqdm.write if enabled else (lambda text: print(text, file=sys.stderr))

    def start(self, cell: Cell):
        self.cell, self.epochs_done = cell, 0
        self.bar.set_description_str(f"cell {self.done + 1}/{self.count}", refresh=False)
        self.bar.set_postfix_str(cell.label())

    def epoch(self, epoch: int):
        self.epochs_done += 1
        self.bar.update(self.epoch_cost[self.cell.key])

    def finish(self, cell: Cell, row: dict):
        self.done += 1
        remaining = (cell.epochs - self.epochs_done) * self.epoch_cost[cell.key] + CELL_COST
        self.bar.update(remaining)
        self.write(f"[{self.done}/{self.count}] {cell.label()}: test accuracy {row['test_accuracy']:.3f}, "
                   f"{row['train_seconds']:.1f} s of training")

    def close(self):
        self.bar.close()


def _keep_if_best(out_dir: pathlib.Path, row: dict, candidate: pathlib.Path) -> None:
    """Moves the model just trained to `best_model.keras` if its test accuracy is the best so far."""
    info_path = out_dir / BEST_MODEL_INFO
    best = json.loads(info_path.read_text()) if info_path.exists() else None
    if candidate.exists() and (best is None or best["key"] == row["key"]
                               or row["test_accuracy"] > best["test_accuracy"]):
        os.replace(candidate, out_dir / BEST_MODEL)
        info = {"key": row["key"], "test_accuracy": row["test_accuracy"],
                "configuration": {k: row[k] for k in ("model", "norm", "batch_size", "seed") if k in row}}
        atomic_write(info_path, json.dumps(info, indent=1) + "\n")
    candidate.unlink(missing_ok=True)


def run_grid(spec: GridSpec, prepared: Prepared, out_dir, *, force: bool = False, progress: bool = True,
             train: TrainFn = train_cell, shard: Shard | None = None) -> RunSummary:
    """Trains the cells of `spec` (or of `shard`) not yet finished in `out_dir`, saving each at once.

    Each finished cell is written to its own file, `cells/<key>.json`, before the
    next starts, so an interruption (Ctrl-C, a crash, a killed job) loses only
    the cell in progress, and the same call again resumes. A cell file is never
    overwritten (except with `force`), and a cell that another process finished
    meanwhile is skipped: shards may run concurrently, even twice, on one folder.

    Without `shard`, `results.json`/`results.csv` are rewritten after every cell,
    and `report.md` and the plots (over the grid's finished cells) at the end,
    also after an interruption; the model of the best cell trained so far is kept
    as `best_model.keras` (which cell: `best_model.json`). A shard writes only
    its cell files, and no model: `keras-norms report` merges the shards.

    Args:
        spec: The grid.
        prepared: Its data (`training.prepare(spec)`).
        out_dir: The results folder (created if missing).
        force: Retrain cells that are already finished, replacing their files.
        progress: Show a progress bar; otherwise print one line per cell.
        train: Trains one cell and saves its model to the path it is given, if
            any (`training.train_cell`; tests inject failures here).
        shard: Run only this shard's cells (see `shards.Shard`).

    Returns:
        A `RunSummary`.

    Examples:
        >>> spec = GridSpec(norms=("batch", "group"), batch_sizes=(32,), epochs=1, seeds=(0,))
        >>> summary = run_grid(spec, prepare(spec), "out", shard=Shard(0, 2))  # doctest: +SKIP
        >>> summary.trained, summary.skipped  # doctest: +SKIP
        (1, 0)
    """
    out = pathlib.Path(out_dir)
    cells = spec.cells(input_shape=prepared.input_shape, target_accuracy=prepared.target_accuracy)
    mine = cells if shard is None else shard.select(cells)
    store = CellStore(out)
    finished = store.finished()
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in mine if force or c.key not in finished]
    bar = _Progress(todo, len(prepared.data.y_train), progress and sys.stderr.isatty())
    host = host_description()
    trained = late = duplicates = 0
    try:
        for cell in todo:
            if not force and store.has(cell.key):  # another process finished it since this one started
                finished[cell.key] = store.load(cell.key)
                late += 1
                continue
            bar.start(cell)
            started = time.perf_counter()
            candidate = None if shard is not None else out / f".candidate-{BEST_MODEL}"
            metrics = train(cell, prepared, bar.epoch, candidate)
            row = {"key": cell.key, **cell.config(), **metrics, **host,
                   "cell_seconds": time.perf_counter() - started,
                   "finished_at": datetime.datetime.now().isoformat(timespec="seconds")}
            saved = store.save(row, replace=force)
            trained += saved
            duplicates += not saved
            finished[cell.key] = row if saved else store.load(cell.key)
            if candidate is not None:
                if saved:
                    _keep_if_best(out, row, candidate)
                candidate.unlink(missing_ok=True)
                ResultsStore(out).replace(ordered_rows(finished, cells)[1])
            bar.finish(cell, row)
    finally:
        bar.close()
        grid_rows, all_rows = ordered_rows(store.finished(), cells)
        path = None if shard is not None else write_outputs(out, grid_rows, all_rows,
                                                            data_description(prepared))
    return RunSummary(trained, len(mine) - len(todo) + late, grid_rows, path, duplicates)
