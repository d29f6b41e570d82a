"""A griffe extension: read `keras_norms.models` and `keras_norms.export` from where setup.cfg's
`package_dir` takes them (`models/`, `export/`), as `pip install` does, so that the API reference
is built by static analysis without importing TensorFlow."""

from __future__ import annotations

import configparser
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[2]


def _package_dirs() -> dict[str, Path]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser.get("options", "package_dir", fallback="").strip().splitlines()
    pairs = (line.split("=") for line in lines if "=" in line)
    return {name.strip(): ROOT / folder.strip() for name, folder in pairs}


class PackageDir(griffe.Extension):
    """Attach each `package_dir` subpackage, with its modules, to the package that installs it."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        for name, folder in _package_dirs().items():
            parent_name, _, leaf = name.rpartition(".")
            if parent_name == pkg.path and leaf not in pkg.members:
                pkg.set_member(leaf, self._load(name, folder, pkg, loader))

    def _load(self, name, folder, parent, loader) -> griffe.Module:
        module = self._visit(name, folder / "__init__.py", parent, loader)
        for path in sorted(folder.glob("*.py")):
            if path.stem != "__init__":
                module.set_member(path.stem, self._visit(f"{name}.{path.stem}", path, module, loader))
        return module

    @staticmethod
    def _visit(name, path, parent, loader) -> griffe.Module:
        code = path.read_text()
        loader.lines_collection[path] = code.splitlines()
        return griffe.visit(name.rpartition(".")[2], path, code, parent=parent,
                            docstring_parser=loader.docstring_parser,
                            docstring_options=loader.docstring_options,
                            lines_collection=loader.lines_collection,
                            modules_collection=loader.modules_collection)
