"""Griffe extensions for the API reference.

`KerasSections`: the docstring sections that Keras layers write and Google style does not know are
rendered as sections, not as raw-text admonitions. "Call arguments:" becomes a parameter list like
"Args:"; "Input shape:" and "Output shape:" a list of `name: shape` entries (or a titled paragraph);
"Reference:" and "References:" a titled paragraph, whose Markdown (a list of links) renders as
written. The docstrings themselves are unchanged: the sections are converted when parsed.

`PublicBases`: the "Bases:" line names public classes only. A base defined in a private module
(`keras_norms._base.AffineNormalization`) is shown under its public name
(`keras_norms.AffineNormalization`); a private base with no public name is replaced by its own bases.
"""

from __future__ import annotations

import re
import textwrap

import griffe

PACKAGE = "keras_norms"
PUBLIC_MODULES = ("keras_norms", "keras_norms.functional", "keras_norms.models", "keras_norms.export",
                  "keras_norms.distributed")
PARAMETER_LISTS = {"call arguments": "Call arguments:"}
SHAPES = {"input shape": "Input shape:", "output shape": "Output shape:"}
PARAGRAPHS = {"reference": "Reference:", "references": "References:"}
ENTRY = re.compile(r"^[*\w]+:(\s|$)")


def _titled(title: str, markdown: str) -> griffe.DocstringSectionText:
    heading = f'<p><span class="doc-section-title">{title}</span></p>'
    return griffe.DocstringSectionText(f"{heading}\n\n{markdown}")


def _entries(contents: str) -> list[griffe.DocstringParameter] | None:
    """`name: description` entries, continued on indented lines, as parameters; None if not so."""
    lines = contents.splitlines()
    if not lines or not ENTRY.match(lines[0]):
        return None
    if any(line and not line[0].isspace() and not ENTRY.match(line) for line in lines):
        return None
    # A first line, which Google style reads as the summary, then the entries as "Args:".
    text = "Entries.\n\nArgs:\n" + textwrap.indent(contents, "    ")
    parsed = griffe.Docstring(text).parse("google", warn_unknown_params=False, warn_missing_types=False)
    if len(parsed) != 2 or parsed[1].kind is not griffe.DocstringSectionKind.parameters:
        return None
    return parsed[1].value


def convert(sections: list[griffe.DocstringSection]) -> list[griffe.DocstringSection]:
    converted = []
    for section in sections:
        if section.kind is griffe.DocstringSectionKind.admonition:
            key = (section.title or "").strip().rstrip(":").lower()
            contents = section.value.contents
            if key in PARAMETER_LISTS or key in SHAPES:
                entries = _entries(contents)
                title = PARAMETER_LISTS.get(key) or SHAPES[key]
                if entries is not None:
                    converted.append(griffe.DocstringSectionParameters(entries, title=title))
                    continue
                if key in SHAPES:
                    converted.append(_titled(title, contents))
                    continue
                raise ValueError(f"'{title}' is not a list of `name: description` entries:\n{contents}")
            if key in PARAGRAPHS:
                converted.append(_titled(PARAGRAPHS[key], contents))
                continue
        converted.append(section)
    return converted


class _Docstring(griffe.Docstring):
    """A docstring whose parsed sections go through `convert`."""

    @property
    def parsed(self) -> list[griffe.DocstringSection]:
        cached = self.__dict__.get("_converted")
        if cached is None:
            cached = self.__dict__["_converted"] = convert(self.parse())
        return cached


def _objects(obj: griffe.Object, seen: set[int]):
    """`obj` and every object defined under it (aliases are not followed)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if obj.is_module or obj.is_class:
        for member in list(obj.members.values()):
            if not member.is_alias:
                yield from _objects(member, seen)


class KerasSections(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.path != PACKAGE:
            return
        for obj in _objects(pkg, set()):
            if obj.docstring is not None and type(obj.docstring) is griffe.Docstring:
                obj.docstring.__class__ = _Docstring


def _is_private(path: str) -> bool:
    return any(part.startswith("_") for part in path.split("."))


class PublicBases(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.path != PACKAGE:
            return
        public = self._public_names(pkg)
        for obj in _objects(pkg, set()):
            if obj.is_class:
                obj.bases = self._bases(obj, public, loader, depth=0)

    @staticmethod
    def _public_names(pkg: griffe.Module) -> dict[str, tuple[str, str]]:
        """Canonical path -> (public module, name) for the names the public modules export."""
        names = {}
        for module_path in PUBLIC_MODULES:
            try:
                module = pkg if module_path == PACKAGE else pkg[module_path.removeprefix(PACKAGE + ".")]
            except KeyError:
                continue
            for name in module.exports or []:
                try:
                    target = module[name].final_target if module[name].is_alias else module[name]
                except (griffe.AliasResolutionError, griffe.CyclicAliasError, KeyError):
                    continue
                names.setdefault(target.path, (module_path, name))
        return names

    def _bases(self, cls, public, loader, depth):
        bases = []
        for base in cls.bases:
            path = base if isinstance(base, str) else base.canonical_path
            if not (path.startswith(PACKAGE + ".") and _is_private(path)):
                bases.append(base)
            elif path in public:
                module_path, name = public[path]
                bases.append(griffe.ExprName(name, parent=module_path))
            elif depth < 8:
                try:
                    parent = loader.modules_collection.get_member(path)
                except (KeyError, ValueError):
                    bases.append(base)
                    continue
                bases.extend(self._bases(parent, public, loader, depth + 1))
        return bases
