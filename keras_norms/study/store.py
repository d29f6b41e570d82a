"""The results folder: one row per finished cell and seed, rewritten atomically after every cell."""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import tempfile


class StoreError(ValueError):
    """The results folder cannot be used (not a folder, or unreadable results)."""


def atomic_write(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: readers see the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; results are ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def check_out_dir(out_dir) -> None:
    """Raises `StoreError` if `out_dir` cannot hold results; reads only, so a refused run writes nothing."""
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out_dir} exists and is not a folder")
    ResultsStore.read_rows(out / ResultsStore.JSON)


class ResultsStore:
    """`results.json` (the rows, with learning curves) and `results.csv` (the same rows, scalars only).

    Rows are keyed by `Cell.key`; adding a row replaces one with the same key.

    Example:

    >>> import tempfile
    >>> from keras_norms.study.store import ResultsStore
    >>> store = ResultsStore(tempfile.mkdtemp())
    >>> store.add({"key": "abc", "norm": "batch", "test_accuracy": 0.9})
    >>> ResultsStore(store.out_dir).finished_keys()
    {'abc'}
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

    def finished_keys(self) -> set[str]:
        return {row["key"] for row in self.rows}

    def get(self, key: str) -> dict | None:
        return next((row for row in self.rows if row["key"] == key), None)

    def add(self, row: dict) -> None:
        """Adds (or replaces, by key) a row, then rewrites both files."""
        self.rows = [r for r in self.rows if r["key"] != row["key"]] + [row]
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
