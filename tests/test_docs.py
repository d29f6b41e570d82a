"""The examples in the docstrings run and print what they say."""

from __future__ import annotations

import configparser
import doctest
import importlib
import importlib.util
import io
import pkgutil
from pathlib import Path

import pytest

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
CORE_MODULES = {
    "keras_norms",
    "keras_norms.functional",
    "keras_norms.batch",
    "keras_norms.group",
    "keras_norms.layer",
    "keras_norms.registry",
    "keras_norms.compat",
}


def _top_packages() -> list[str]:
    """The packages setup.cfg installs that are not found by walking `keras_norms/` itself
    (`keras_norms.models` and `keras_norms.export` live elsewhere, through `package_dir`)."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    listed = parser.get("options", "packages", fallback="keras_norms").split()
    return ["keras_norms"] + [name for name in listed if name.startswith("keras_norms.")]


def _discover() -> list[str]:
    """Every module of the package, found on disk without importing the modules themselves."""
    found = set()
    for package in _top_packages():
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            continue
        found.add(package)
        pending = [(package, list(spec.submodule_search_locations))]
        while pending:
            parent, paths = pending.pop()
            for info in pkgutil.iter_modules(paths, parent + "."):
                found.add(info.name)
                if info.ispkg:
                    leaf = info.name.rsplit(".", 1)[-1]
                    pending.append((info.name, [str(Path(info.module_finder.path) / leaf)]))
    return sorted(found)


MODULES = _discover()


def _run_doctests(module):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in finder.find(module, module.__name__):
        runner.run(test, out=report.write)
    return runner.summarize(verbose=False), report.getvalue()


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("keras_norms"):
            pytest.skip(f"{name} needs the optional dependency {error.name}")
        raise


def test_discovery_finds_the_core_modules():
    assert CORE_MODULES <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    results, report = _run_doctests(_import(name))
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed:\n{report}"
    if name in CORE_MODULES:
        assert results.attempted > 0, f"{name} has no docstring example"
