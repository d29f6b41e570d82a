"""From the finished cells of a results folder to `results.json`/`.csv`, `report.md` and the plots.

The unsharded run writes these at the end through `write_outputs`; `keras-norms
report OUT` does the same for whatever cells the shards have finished so far
(`merge_folder`), and lists the cells still missing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pathlib
import platform
import sys

from keras_norms.study import report
from keras_norms.study.grid import Cell
from keras_norms.study.plots import write_plots
from keras_norms.study.shards import GRID_FILE, grid_cells, read_grid
from keras_norms.study.store import CellStore, ResultsStore, StoreError, atomic_write


def _version(module: str, *distributions: str) -> str:
    """The version of `module`: its `__version__` where it is imported, else its installed distribution's
    (so that `keras-norms report` need not import TensorFlow to describe this machine)."""
    if module in sys.modules:
        return sys.modules[module].__version__
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def host_description() -> dict:
    """The machine and versions of this process (each row records those of the process that trained it)."""
    import keras_norms

    return {"machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores",
            "versions": f"keras-norms {keras_norms.__version__}, "
            f"TensorFlow {_version('tensorflow', 'tensorflow', 'tensorflow-cpu', 'tf-nightly')}, "
            f"Keras {_version('keras', 'keras', 'keras-nightly')}"}


def run_context(data: str, rows: list[dict]) -> dict:
    """The description of the machines and data that heads the report.

    Rows from folders older than the `machine` and `versions` columns are
    described by this process's machine.
    """
    def distinct(field: str) -> str:
        values = dict.fromkeys(r[field] for r in rows if r.get(field))
        if not all(r.get(field) for r in rows):
            values.update(dict.fromkeys([host_description()[field]]))
        return "; ".join(values)

    return {
        "machine": distinct("machine"),
        "versions": distinct("versions"),
        "data": data,
        "train_minutes": sum(r.get("train_seconds", 0.0) for r in rows) / 60.0,
        "run_minutes": sum(r.get("cell_seconds", 0.0) for r in rows) / 60.0,
    }


def ordered_rows(finished: dict[str, dict], cells: list[Cell]) -> tuple[list[dict], list[dict]]:
    """The grid's finished rows in grid order, and every finished row of the folder (the grid's first).

    Examples:
        >>> from keras_norms.study.grid import GridSpec
        >>> from keras_norms.study.merge import ordered_rows
        >>> cells = GridSpec(norms=("batch",), seeds=(0,)).cells(input_shape=(32, 32, 1), target_accuracy=0.9)
        >>> finished = {"other": {"key": "other"}, cells[1].key: {"key": cells[1].key}}
        >>> grid_rows, all_rows = ordered_rows(finished, cells)
        >>> len(grid_rows), [row["key"] for row in all_rows][1:]
        (1, ['other'])
    """
    keys = [c.key for c in cells if c.key in finished]
    grid_rows = [finished[k] for k in keys]
    others = [row for key, row in finished.items() if key not in set(keys)]
    return grid_rows, grid_rows + others


def write_outputs(out_dir, grid_rows: list[dict], all_rows: list[dict], data: str) -> pathlib.Path | None:
    """Writes `results.json`/`.csv` (all rows) and, if any grid row is finished, `report.md` and the plots.

    Returns the path of `report.md`, or None when no cell of the grid is finished.
    """
    out = pathlib.Path(out_dir)
    if all_rows:
        ResultsStore(out).replace(all_rows)
    if not grid_rows:
        return None
    plots = write_plots(grid_rows, out)
    path = out / "report.md"
    atomic_write(path, report.render(grid_rows, run_context(data, grid_rows), plots))
    return path


def describe_cell(cell: Cell) -> str:
    """A missing cell as `keras-norms report` lists it: the grid values that tell it apart.

    Examples:
        >>> from keras_norms.study.grid import GridSpec
        >>> from keras_norms.study.merge import describe_cell
        >>> cell = GridSpec(norms=("batch",)).cells(input_shape=(32, 32, 1), target_accuracy=0.9)[0]
        >>> describe_cell(cell)
        'norm=batch batch_size=2 lr=0.001 bn_momentum=0.9 seed=0'
    """
    parts = [f"norm={cell.norm}", f"batch_size={cell.batch_size}", f"lr={cell.lr:g}"]
    if cell.bn_momentum is not None:
        parts.append(f"bn_momentum={cell.bn_momentum:g}")
    if cell.groups is not None:
        parts.append(f"groups={cell.groups}")
    for field in ("placement", "qk_norm", "warmup_epochs", "depth"):  # the transformer's, when set
        if getattr(cell, field, None) not in (None, 0):
            parts.append(f"{field}={getattr(cell, field)}")
    return " ".join([*parts, f"seed={cell.seed}"])


@dataclasses.dataclass
class Merged:
    """A merged folder: the grid, its finished rows (grid order) and its missing cells (with their index)."""

    cells: list[Cell]
    rows: list[dict]
    missing: list[tuple[int, Cell]]
    target_accuracy: float
    report_path: pathlib.Path | None


def merge_folder(out_dir) -> Merged:
    """Merges the finished cells of `out_dir` into `results.json`/`.csv`, `report.md` and the plots.

    Reads the grid from `grid.json` (written when a run starts) and every cell
    file; the shards may still be running.

    Raises:
        StoreError: `out_dir` has no `grid.json`, or unreadable results.

    Example (a folder that `keras-norms compare --shard 0/2 --out out` started):

    >>> merged = merge_folder("out")  # doctest: +SKIP
    >>> print(f"{len(merged.rows)} finished, {len(merged.missing)} missing")  # doctest: +SKIP
    4 finished, 4 missing
    """
    out = pathlib.Path(out_dir)
    if not out.is_dir():
        raise StoreError(f"{out_dir} is not a folder")
    record = read_grid(out)
    if record is None:
        raise StoreError(f"{out_dir} has no {GRID_FILE}, so its grid is unknown: `keras-norms compare` "
                         "writes it when it starts; run the command that made this folder once more "
                         "(it retrains nothing finished)")
    cells = grid_cells(record)
    finished = CellStore(out).finished()
    grid_rows, all_rows = ordered_rows(finished, cells)
    path = write_outputs(out, grid_rows, all_rows, record["data"])
    missing = [(i, cell) for i, cell in enumerate(cells) if cell.key not in finished]
    return Merged(cells, grid_rows, missing, record["grid"]["target_accuracy"], path)
