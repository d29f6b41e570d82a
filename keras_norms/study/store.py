"""The results folder: one file per finished cell (written once), and the merged `results.json`/`.csv`.

`cells/<key>.json` is the record of a finished cell; `results.json` and
`results.csv` are views of all of them, rewritten atomically. Folders written
before cells had files of their own hold only `results.json`: its rows count as
finished cells too.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import tempfile


class StoreError(ValueError):
    """The results folder cannot be used (not a folder, unreadable results, another grid's shards)."""


def _write_temporary(path: pathlib.Path, text: str) -> str:
    """Writes `text` to a new hidden file next to `path`, flushed to disk; returns its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; results are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: readers see the old or the new file."""
    tmp = _write_temporary(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def create_exclusive(path: pathlib.Path, text: str) -> bool:
    """Creates `path` with `text` unless it exists; returns whether this call created it.

    The text goes to a temporary file first, which is then hard-linked to
    `path`: the link fails if `path` exists, so of processes racing to create
    the same file (on one machine or over NFS) exactly one wins, and readers
    never see a partly written file.

    Examples:
        >>> import pathlib, tempfile
        >>> from keras_norms.study.store import create_exclusive
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cell.json"
        >>> create_exclusive(path, "first"), create_exclusive(path, "second"), path.read_text()
        (True, False, 'first')
    """
    tmp = _write_temporary(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)
    return True


def check_out_dir(out_dir) -> None:
    """Raises `StoreError` if `out_dir` cannot hold results; reads only, so a refused run writes nothing."""
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out_dir} exists and is not a folder")
    CellStore(out).finished()


class ResultsStore:
    """`results.json` (the rows, with learning curves) and `results.csv` (the same rows, scalars only).

    Both are views of the cell files (`CellStore`), rewritten with `replace`;
    rows carry their cell's key.

    Examples:
        >>> import tempfile
        >>> from keras_norms.study.store import ResultsStore
        >>> store = ResultsStore(tempfile.mkdtemp())
        >>> store.replace([{"key": "abc", "norm": "batch", "test_accuracy": 0.9}])
        >>> ResultsStore(store.out_dir).rows
        [{'key': 'abc', 'norm': 'batch', 'test_accuracy': 0.9}]
    """

    JSON = "results.json"
    CSV = "results.csv"

    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
        self.rows: list[dict] = self.read_rows(self.out_dir / self.JSON)

    @staticmethod
    def read_rows(path: pathlib.Path) -> list[dict]:
        if not path.exists():
            return []
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise StoreError(
                f"{path} is not a results file of keras-norms compare ({error}); "
                "move it away or choose another --out"
            ) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "key" in r for r in rows):
            raise StoreError(f"{path} has malformed rows; move it away or choose another --out")
        return rows

    def replace(self, rows: list[dict]) -> None:
        """Replaces all rows, then rewrites both files."""
        self.rows = list(rows)
        self.write()

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out_dir / self.JSON, json.dumps({"rows": self.rows}, indent=1) + "\n")
        atomic_write(self.out_dir / self.CSV, self.csv_text())

    def csv_text(self) -> str:
        """The rows as CSV: every scalar column (learning curves and other lists stay in the JSON)."""
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k, v in row.items() if k not in columns and not isinstance(v, dict)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        return buffer.getvalue()


class CellStore:
    """The finished cells of a results folder, one file each: `cells/<key>.json` holds the cell's row.

    A cell file is created once and never overwritten, except with
    `replace=True` (`--force`): processes that race on a cell keep exactly one
    result. Rows of an older `results.json` count as finished cells too.

    Examples:
        >>> import tempfile
        >>> from keras_norms.study.store import CellStore
        >>> store = CellStore(tempfile.mkdtemp())
        >>> store.save({"key": "abc", "test_accuracy": 0.9})
        True
        >>> store.save({"key": "abc", "test_accuracy": 0.5})  # finished already: kept as it was
        False
        >>> store.finished()["abc"]["test_accuracy"]
        0.9
    """

    FOLDER = "cells"

    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
        self.folder = self.out_dir / self.FOLDER

    def path(self, key: str) -> pathlib.Path:
        return self.folder / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether the cell has its file (rows only in an older `results.json` do not count here)."""
        return self.path(key).exists()

    def load(self, key: str) -> dict:
        return self._read(self.path(key))

    def _read(self, path: pathlib.Path) -> dict:
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise StoreError(f"{path} is not a cell file of keras-norms compare ({error}); "
                             "move it away to train the cell again") from None
        if not isinstance(row, dict) or row.get("key") != path.stem:
            raise StoreError(f"{path} is not the row of cell {path.stem}; "
                             "move it away to train the cell again")
        return row

    def finished(self) -> dict[str, dict]:
        """Every finished row by key: those of `results.json` in its order, then (or in their place) the
        cell files, by finishing time.

        Raises:
            StoreError: `results.json` or a cell file is unreadable.
        """
        rows = {row["key"]: row for row in ResultsStore.read_rows(self.out_dir / ResultsStore.JSON)}
        files = [self._read(path) for path in self.folder.glob("*.json")] if self.folder.is_dir() else []
        for row in sorted(files, key=lambda r: (str(r.get("finished_at", "")), r["key"])):
            rows[row["key"]] = row
        return rows

    def save(self, row: dict, *, replace: bool = False) -> bool:
        """Writes the file of `row["key"]` and returns True; returns False if it exists (unless `replace`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(row, indent=1) + "\n"
        if replace:
            atomic_write(self.path(row["key"]), text)
            return True
        return create_exclusive(self.path(row["key"]), text)
