"""The `keras-norms` command's entry point: TensorFlow's C++ start-up lines hidden, then `keras_norms.cli`.

This module stands outside the `keras_norms` package on purpose: importing
anything from the package imports Keras, and so TensorFlow, whose start-up
lines (the oneDNN notice, "Could not find cuda drivers", "failed call to
cuInit" on a machine without a GPU, the absl "before absl::InitializeLog()"
banner) are written while its shared libraries load, before its own
`TF_CPP_MIN_LOG_LEVEL` takes effect; an ERROR-level line such as the cuInit one
is not hidden by `TF_CPP_MIN_LOG_LEVEL=2` either.

So, before anything imports TensorFlow, `main`:

- sets `TF_CPP_MIN_LOG_LEVEL=2` unless the environment sets it (TensorFlow's
  later INFO and WARNING lines, e.g. XLA's, are then hidden by TensorFlow itself);
- unless `TF_CPP_MIN_LOG_LEVEL` is 0, hooks the import of `tensorflow` (made by
  Keras, now or later, whatever the backend): while it imports and first lists
  its devices, the process's stderr goes to a temporary file, which is then
  written back to stderr without TensorFlow's log lines below that level and
  without its known start-up lines (`STARTUP_NOISE`). Everything else written
  meanwhile (Python warnings, tracebacks, FATAL lines) is written back.

`TF_CPP_MIN_LOG_LEVEL=0 keras-norms ...` shows every line TensorFlow writes (also where the process
dies while TensorFlow loads, before the temporary file is written back).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"

#: A C++ log line of TensorFlow, XLA or absl: `I0000 00:00:1712345678.123456  1234 port.cc:153] ...`
#: (absl), or `2024-05-01 12:00:00.123456: I tensorflow/core/util/port.cc:113] ...` (older TensorFlow).
_LOG_LINE = re.compile(rb"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] "
                       rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) [^\s\]]+:\d+\] )")
_SEVERITIES = b"IWEF"

#: TensorFlow's log lines while it starts, whatever their level (the cuInit one is an ERROR on every
#: machine without a GPU): each is hidden unless `TF_CPP_MIN_LOG_LEVEL=0`.
STARTUP_NOISE = (
    b"oneDNN custom operations are on",
    b"This TensorFlow binary is optimized",
    b"Could not find cuda drivers",
    b"cuda_platform",
    b"cuInit",
    b"cuda_diagnostics",
    b"Unable to register cu",
    b"computation_placer.cc",
    b"Could not find TensorRT",
)
#: The lines TensorFlow writes while it starts that are not log lines (absl's banner, and the second line
#: of the CPU instructions notice).
_STARTUP_TEXT = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"To enable the following instructions:",
)


def min_log_level(environ=os.environ) -> int:
    """TensorFlow's `TF_CPP_MIN_LOG_LEVEL` in `environ`, 0 to 3 (a value that is no level counts as 0)."""
    value = environ.get(LEVEL_VARIABLE, "").strip()
    return min(int(value), 3) if value.isdigit() else 0


def keep_line(line: bytes, level: int) -> bool:
    """Whether a line written to stderr while TensorFlow starts is written back, at `TF_CPP_MIN_LOG_LEVEL`
    `level`: not a log line of TensorFlow below `level`, nor one of its start-up lines (at a level above 0).
    Anything else, e.g. a Python warning, a traceback, a FATAL line, is kept."""
    if level <= 0:
        return True
    match = _LOG_LINE.match(line)
    if match is None:
        return not line.startswith(_STARTUP_TEXT)
    severity = match.group(1) or match.group(2)
    if severity == b"F":
        return True
    return _SEVERITIES.index(severity) >= level and not any(p in line for p in STARTUP_NOISE)


@contextlib.contextmanager
def startup_lines_hidden(level: int):
    """Within the block, stderr (file descriptor 2) goes to a temporary file; afterwards the lines that
    `keep_line` keeps are written back to stderr, in order (also when the block raises)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if keep_line(line, level))
            if kept:
                os.write(2, kept)


class _QuietLoader:
    """The loader of `tensorflow`, importing it and listing its devices (the cuInit call) with
    `startup_lines_hidden`; anything else goes to TensorFlow's own loader."""

    def __init__(self, loader, level: int):
        self._loader, self._level = loader, level

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with startup_lines_hidden(self._level):
            self._loader.exec_module(module)
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorFlowImport:
    """A `sys.meta_path` finder that hands the first import of `tensorflow` to `_QuietLoader`."""

    def __init__(self, level: int):
        self._level = level

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self._level)
        return spec


def quiet_tensorflow_startup() -> None:
    """Sets `TF_CPP_MIN_LOG_LEVEL=2` unless it is set, and hides TensorFlow's start-up lines (see the
    module's docstring) unless it is 0. It acts only where TensorFlow is not imported yet."""
    os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)
    level = min_log_level()
    if level > 0 and "tensorflow" not in sys.modules and \
            not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport(level))


def main(argv: list[str] | None = None) -> int:
    """`keras-norms`: `keras_norms.cli.main` with TensorFlow's start-up lines hidden."""
    quiet_tensorflow_startup()
    from keras_norms.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
