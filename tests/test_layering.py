"""The declared layering of the code, checked over the syntax trees of every module.

Each module belongs to one layer of `LAYERS` (highest first) and may import its own layer and the
layers below, never a layer above; siblings written `a | b` are independent (neither imports the
other), siblings written `a : b` may import each other; `INDEPENDENT` lists packages that must not
import each other wherever they sit. And the import graph has no cycle, anywhere.

Every import counts: at the top of a module, in a class, inside a function (a lazy import), under
`if TYPE_CHECKING:`, and `importlib.import_module("...")` / `__import__("...")` with a literal name.
The modules are read where setup.cfg installs them from: its `package_dir` maps `models/` and
`export/` to `keras_norms.models` and `keras_norms.export`, and `_keras_norms_cli.py` (a
`py_modules` entry) is the console entry point. (import-linter's graph, grimp, finds a package's
modules under the package's own folder only, so it misses those two; hence this check.)

It imports nothing of the package (the standard library only, well under a second), so it runs
as a test and as a script: `python tests/test_layering.py` prints each violation and exits 1,
which is what the pre-commit hook runs.
"""

from __future__ import annotations

import ast
import configparser
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]

#: The layers, highest first: (what it is, its modules). A name stands for the module and every
#: module under it; `=name` for that module alone (a package's `__init__`).
LAYERS = (
    ("console entry point", "_keras_norms_cli"),
    ("command line", "keras_norms.cli"),
    ("comparison study", "keras_norms.study"),  # trains the zoo's models
    ("model zoo and exporter", "keras_norms.models | keras_norms.export"),
    ("public API", "=keras_norms"),
    ("registry and model tools",
     "keras_norms.registry : keras_norms.convert : keras_norms.recalibrate : keras_norms.compat"
     " : keras_norms.distributed : keras_norms.cli_args : keras_norms.sample_data"),
    ("layers",
     "keras_norms.batch : keras_norms.layer : keras_norms.group : keras_norms.response"
     " : keras_norms.conditional : keras_norms.adaptive : keras_norms.spade : keras_norms.switchable"
     " : keras_norms.weight_norm : keras_norms.weight_standardization : keras_norms.recurrent"
     " : keras_norms.pointwise : keras_norms.attention"),
    ("functional", "keras_norms.functional"),
    ("base", "keras_norms._base"),
    ("argument checks", "keras_norms._checks"),
    ("kernels", "keras_norms.kernels"),
)

#: Packages that import nothing of each other, whatever their layers allow.
INDEPENDENT = (
    ("keras_norms.study", "keras_norms.export"),  # `compare --export-best` is joined in keras_norms.cli
)


class Import(NamedTuple):
    importer: str
    imported: str
    path: str
    line: int
    lazy: bool
    through: str = ""  # for a package that Python runs first: the module the statement names


class Layering(NamedTuple):
    """`LAYERS` parsed: per entry (a name, exact or not) its layer index, and whether it is independent."""

    entries: tuple[tuple[str, bool, int], ...]  # (name, exact, layer index)
    independent_layers: frozenset[int]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, layers) -> Layering:
        entries, independent = [], set()
        for index, (_, text) in enumerate(layers):
            if "|" in text and ":" in text:
                raise ValueError(f"layer {text!r} mixes '|' and ':'")
            if "|" in text:
                independent.add(index)
            for name in text.replace("|", ":").split(":"):
                name = name.strip()
                entries.append((name.lstrip("="), name.startswith("="), index))
        return cls(tuple(entries), frozenset(independent), tuple(name for name, _ in layers))

    def entry(self, module: str) -> tuple[str, int] | None:
        """The (declared name, layer index) a module belongs to; None if it belongs to none."""
        found = [(name, index) for name, exact, index in self.entries
                 if module == name or (not exact and module.startswith(name + "."))]
        if len(found) > 1:
            raise ValueError(f"{module} is in several layers: {found}")
        return found[0] if found else None


def installed_modules(root: Path) -> tuple[dict[str, Path], list[str]]:
    """The modules setup.cfg installs, by dotted name, with their files; and the problems found.

    Every `.py` file under an installed package's folder is a module (a package left out of
    `packages` included: that is a problem of its own, reported).
    """
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    options = config["options"]
    lines = lambda key: [line.strip() for line in options.get(key, "").splitlines() if line.strip()]
    packages = lines("packages")
    folders = dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines("package_dir"))
    # The folders to walk: each top-level package's own, and each that package_dir maps.
    roots = {package: root / folders.get(package, package) for package in packages
             if "." not in package or package in folders}
    modules, problems = {}, []
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            name = ".".join((package, *parts))
            modules[name.removesuffix(".__init__")] = path
            if path.name == "__init__.py" and name.removesuffix(".__init__") not in packages:
                problems.append(f"{path.relative_to(root)}: package {name.removesuffix('.__init__')} is not "
                                "in setup.cfg's `packages` (pip install would leave it out)")
    for module in lines("py_modules"):
        modules[module] = root / f"{module}.py"
    return modules, problems


def _is_lazy(stack) -> bool:
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) for node in stack)


def _walk(node, stack=()):
    yield node, stack
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, (*stack, node))


def imports_of(name: str, path: Path, modules, root: Path) -> tuple[list[Import], list[str]]:
    """The imports of our own modules made anywhere in the module `name`; and the unresolved ones."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found, problems = [], []
    where = str(path.relative_to(root))
    tops = {module.split(".")[0] for module in modules}

    def add(target: str, candidates, node, stack):
        if target.split(".")[0] not in tops:
            return
        for candidate in candidates:
            if candidate in modules:
                found.append(Import(name, candidate, where, node.lineno, _is_lazy(stack)))
                return
        problems.append(f"{where}:{node.lineno}: {name} imports {target}, which is no module")

    for node, stack in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, [alias.name], node, stack)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from package import name`: the submodule if there is one, else the package itself.
                add(base, [f"{base}.{alias.name}", base] if alias.name != "*" else [base], node, stack)
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            first = node.args[0]
            if (called in ("import_module", "__import__") and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)):
                add(first.value, [first.value], node, stack)
    return found, problems


def import_graph(root: Path = ROOT) -> tuple[dict[str, Path], list[Import], list[str]]:
    """The modules, their imports and the unresolved imports.

    Importing `a.b.c` runs the packages `a` and `a.b` first: the graph has those imports too, but
    for the packages the importer is inside of (they are running already).
    """
    modules, problems = installed_modules(root)
    edges = {}
    for name, path in sorted(modules.items()):
        found, unresolved = imports_of(name, path, modules, root)
        for edge in found:
            edges.setdefault(edge, None)
            parts = edge.imported.split(".")
            for end in range(1, len(parts)):
                package = ".".join(parts[:end])
                if not (name == package or name.startswith(package + ".")):
                    edges.setdefault(edge._replace(imported=package, through=edge.imported), None)
        problems += unresolved
    return modules, list(edges), problems


def _describe(edge: Import) -> str:
    through = f" (the package of {edge.through})" if edge.through else ""
    return f"{edge.path}:{edge.line}: {edge.importer} imports {edge.imported}{through}" + (
        " (lazily)" if edge.lazy else "")


def cycles(edges) -> list[list[Import]]:
    """One cycle (as its imports) per strongly connected component of more than one module."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        if edge.importer != edge.imported:
            graph.setdefault(edge.importer, {}).setdefault(edge.imported, edge)
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]

    def connect(node):  # Tarjan's algorithm (the graph is small: recursion is fine)
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    found = []
    for component in components:  # a shortest cycle through the component's first module
        start = min(component)
        paths, queue, cycle = {start: []}, [start], None
        while cycle is None:
            node = queue.pop(0)
            for successor, edge in sorted(graph[node].items()):
                if successor == start:
                    cycle = [*paths[node], edge]
                    break
                if successor in component and successor not in paths:
                    paths[successor] = [*paths[node], edge]
                    queue.append(successor)
        found.append(cycle)
    return found


def violations(root: Path = ROOT, layers=LAYERS, independent=INDEPENDENT) -> list[str]:
    """Every import against the layering, every cycle, and every module outside the layers."""
    layering = Layering.parse(layers)
    modules, edges, problems = import_graph(root)
    for module in sorted(modules):
        if layering.entry(module) is None:
            problems.append(f"{modules[module].relative_to(root)}: {module} is in no layer of "
                            "tests/test_layering.py's LAYERS")
    within = lambda module, package: module == package or module.startswith(package + ".")
    for edge in edges:
        source, target = layering.entry(edge.importer), layering.entry(edge.imported)
        if source is None or target is None or edge.importer == edge.imported or edge.through:
            continue  # (a package run first is in its module's layer: that import is checked)
        (source_name, source_layer), (target_name, target_layer) = source, target
        if target_layer < source_layer:
            problems.append(f"{_describe(edge)}: the {layering.names[source_layer]} layer imports the "
                            f"higher {layering.names[target_layer]} layer")
        elif (target_layer == source_layer and source_name != target_name
              and source_layer in layering.independent_layers):
            problems.append(f"{_describe(edge)}: {source_name} and {target_name} are independent")
        for group in independent:
            owners = {package for package in group if within(edge.importer, package)}
            others = {package for package in group if within(edge.imported, package)} - owners
            if owners and others:
                problems.append(f"{_describe(edge)}: {' and '.join(sorted(owners | others))} are independent")
    for cycle in cycles(edges):
        names = " -> ".join([cycle[0].importer, *(edge.imported for edge in cycle)])
        problems.append(f"import cycle {names}: " + "; ".join(_describe(edge) for edge in cycle))
    return problems


# The tests.


def test_the_code_keeps_the_declared_layering():
    problems = violations()
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_every_declared_module_exists_and_the_graph_is_read_whole():
    modules, edges, _ = import_graph()
    layering = Layering.parse(LAYERS)
    for name, exact, _ in layering.entries:
        assert any(m == name or (not exact and m.startswith(name + ".")) for m in modules), name
    # The package_dir-mapped packages and the lazy imports are in the graph.
    assert {"keras_norms.models._norm", "keras_norms.export.cli", "_keras_norms_cli"} <= modules.keys()
    pairs = {(edge.importer, edge.imported) for edge in edges}
    assert ("keras_norms.export.cli", "keras_norms.cli_args") in pairs
    assert ("_keras_norms_cli", "keras_norms.cli") in pairs  # an import inside `main`
    assert any(edge.lazy and edge.importer == "keras_norms.cli" for edge in edges)


SYNTHETIC = {
    "setup.cfg": "[options]\npackages =\n    keras_norms\n    keras_norms.kernels\n"
                 "    keras_norms.study\n    keras_norms.models\n    keras_norms.export\n"
                 "py_modules =\n    _keras_norms_cli\npackage_dir =\n"
                 "    keras_norms.models = models\n    keras_norms.export = export\n",
    "_keras_norms_cli.py": "def main():\n    import keras_norms.cli\n",
    "keras_norms/__init__.py": "from keras_norms import batch, compat\n",
    "keras_norms/compat.py": "def cells():\n    from keras_norms.models.lstm import LayerNormLSTMCell\n",
    "keras_norms/kernels/__init__.py": "",
    "keras_norms/_base.py": "def get():\n    from keras_norms import registry\n    return registry\n",
    "keras_norms/batch.py": "from keras_norms import kernels\n",
    "keras_norms/registry.py": "from keras_norms.batch import BatchNormalization\n",
    "keras_norms/cli.py": "from keras_norms.study import a\n",
    "keras_norms/stray.py": "",
    "keras_norms/recurrent/__init__.py": "",
    "keras_norms/study/__init__.py": "",
    "keras_norms/study/a.py": "from keras_norms.study import b\n",
    "keras_norms/study/b.py": "def f():\n    from keras_norms.study.a import thing\n",
    "keras_norms/study/c.py": "from keras_norms.export import x\nimport keras_norms.study.nothing\n",
    "models/__init__.py": "import keras_norms\n",
    "models/cnn.py": "from keras_norms.export.x import export_model\n",
    "models/lstm.py": "",
    "export/__init__.py": "",
    "export/x.py": "import importlib\n\ndef f():\n    return importlib.import_module('keras_norms.cli')\n",
}


def test_the_check_fails_on_each_kind_of_violation(tmp_path):
    for name, text in SYNTHETIC.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = "\n".join(violations(tmp_path))
    expected = [
        # an upward import inside a function
        "keras_norms/_base.py:2: keras_norms._base imports keras_norms.registry (lazily): the base layer "
        "imports the higher registry and model tools layer",
        # through importlib, from a package_dir-mapped folder
        "export/x.py:4: keras_norms.export.x imports keras_norms.cli (lazily): the model zoo and exporter "
        "layer imports the higher command line layer",
        # between independent siblings of one layer, and between INDEPENDENT packages
        "models/cnn.py:1: keras_norms.models.cnn imports keras_norms.export.x: keras_norms.models and "
        "keras_norms.export are independent",
        "keras_norms/study/c.py:1: keras_norms.study.c imports keras_norms.export.x: keras_norms.export and "
        "keras_norms.study are independent",
        # a cycle closed by a lazy import; one through a package that Python runs first
        "import cycle keras_norms.study.a -> keras_norms.study.b -> keras_norms.study.a",
        "keras_norms/compat.py:2: keras_norms.compat imports keras_norms.models.lstm (lazily): the registry "
        "and model tools layer imports the higher model zoo and exporter layer",
        "import cycle keras_norms -> keras_norms.compat -> keras_norms.models -> keras_norms: ",
        # a module in no layer; a package setup.cfg leaves out; an import of nothing
        "keras_norms/stray.py: keras_norms.stray is in no layer",
        "package keras_norms.recurrent is not in setup.cfg's `packages`",
        "keras_norms.study.c imports keras_norms.study.nothing, which is no module",
    ]
    for message in expected:
        assert message in problems, f"not reported: {message}\nreported:\n{problems}"
    # The allowed imports are not reported: downward, within a layer, the entry point, the API.
    for allowed in ("keras_norms.batch imports", "keras_norms.registry imports", "_keras_norms_cli imports",
                    "keras_norms.models imports keras_norms ", "keras_norms.cli imports"):
        assert allowed not in problems, problems
    assert len(problems.splitlines()) == len(expected), problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) with the layering declared in tests/test_layering.py",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
