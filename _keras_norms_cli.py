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

`keras-norms report` (which reads results files and writes tables and plots) and the help and version
requests (`-h`, `--help`, `--version`) import neither Keras nor TensorFlow: they run the package's
modules they need without the package's `__init__`, which imports every layer (`LIGHT_COMMANDS`).
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


#: The commands that only read and write files: they run without Keras and TensorFlow.
LIGHT_COMMANDS = ("report",)
_PACKAGE = "keras_norms"


def runs_without_tensorflow(argv: list[str]) -> bool:
    """Whether `keras-norms ARGV` runs without importing TensorFlow: a command of `LIGHT_COMMANDS`, or a
    request for help or the version (which argparse answers before any command runs)."""
    if argv[:1] and argv[0] in LIGHT_COMMANDS:
        return True
    options = argv[:argv.index("--")] if "--" in argv else argv
    return not argv or any(a in ("-h", "--help", "--version") for a in options)


class _PackagesWithoutInit:
    """A `sys.meta_path` finder that imports the packages of `keras_norms` (the package and its
    subpackages) as empty stand-ins, their `__init__.py` not run; their modules import as usual."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _PACKAGE and not fullname.startswith(_PACKAGE + "."):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.submodule_search_locations is not None and spec.origin:
            spec.loader = _StandInLoader()
        return spec


class _StandInLoader:
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == _PACKAGE:  # `keras_norms.__version__`, read from its __init__.py
            with open(module.__spec__.origin, encoding="utf-8") as file:
                found = re.search(r"^__version__ = [\"']([^\"']+)", file.read(), flags=re.M)
            module.__version__ = found[1] if found else "unknown"


@contextlib.contextmanager
def package_without_layers():
    """Within the block, `import keras_norms.<module>` runs that module without the `__init__.py` of
    `keras_norms` (which imports every layer, so Keras and TensorFlow) and of its subpackages
    (`keras_norms.export`'s imports TensorFlow); `keras_norms.__version__` is read from that file.
    Afterwards the stand-ins and the modules imported under them are forgotten: a later
    `import keras_norms` imports the package. Where `keras_norms` is imported already, the block
    runs with it as it is."""
    if _PACKAGE in sys.modules:
        yield
        return
    finder = _PackagesWithoutInit()
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if name == _PACKAGE or name.startswith(_PACKAGE + "."):
                del sys.modules[name]


def main(argv: list[str] | None = None) -> int:
    """`keras-norms`: `keras_norms.cli.main` with TensorFlow's start-up lines hidden, and without
    TensorFlow for `report`, `--help` and `--version`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_tensorflow_startup()
    if runs_without_tensorflow(argv):
        with package_without_layers():
            from keras_norms.cli import main as cli_main

            return cli_main(argv)
    from keras_norms.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
