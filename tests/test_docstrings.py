"""Every public name has a complete Google-style docstring, read the way the API reference reads it.

The docstrings are parsed by griffe (the parser of `make docs`) from the source, without importing
it. "Public" is what the API reference documents: the `__all__` of each module below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = [
    "keras_norms",
    "keras_norms.functional",
    "keras_norms.models",
    "keras_norms.export",
    "keras_norms.distributed",
]
OPTIONS = {"warn_unknown_params": True, "warn_missing_types": False, "returns_named_value": False}
# Names that implement a published method, which their docstring cites under "Reference:".
PUBLISHED = {
    "keras_norms": [
        "AdaptiveGroupNormalization", "AdaptiveInstanceNormalization", "AdaptiveLayerNormalization",
        "BatchNormalization", "ConditionalBatchNormalization", "ConditionalInstanceNormalization",
        "FiLM", "FilterResponseNormalization", "GroupNormalization", "InstanceNormalization",
        "LayerNormLSTMCell", "LayerNormSimpleRNNCell", "LayerNormalization", "RMSNormalization", "SPADE",
        "SwitchableNormalization", "TLU",
        "WeightNormalization", "WeightStandardizedConv2D", "recalibrate_batch_norms",
    ],
    "keras_norms.functional": [
        "adaptive_instance_norm", "batch_norm", "batch_norm_train", "filter_response_norm",
        "group_norm", "layer_norm", "rms_norm", "standardize_kernel", "switchable_norm", "tlu",
        "virtual_batch_norm", "weight_normalized_kernel",
    ],
    "keras_norms.models": [
        "lenet", "paper_cnn", "resnet", "transformer",
    ],
}
# Raising is read from the source: a `raise` statement or a call of the argument checks.
RAISES = re.compile(r"\braise\s+\w|\bcheck_\w+\(")


def _load():
    extensions = griffe.load_extensions(str(ROOT / "docs/_griffe/package_dir.py") + ":PackageDir")
    package = griffe.load("keras_norms", search_paths=[str(ROOT)], extensions=extensions,
                          docstring_parser="google", docstring_options=OPTIONS)
    return package


PACKAGE = _load()


def _module(path):
    return PACKAGE if path == "keras_norms" else PACKAGE[path.removeprefix("keras_norms.")]


def _public_names():
    for module in PUBLIC_MODULES:
        for name in _module(module).exports or []:
            if name != "functional":  # the module keras_norms.functional, documented name by name
                yield module, name


NAMES = sorted(_public_names())


def _target(module, name):
    obj = _module(module)[name]
    if obj.is_module:  # a function re-exported under the name of its own module (models.sequence)
        obj = obj[name]
    return obj.final_target if obj.is_alias else obj


def _reference_path(module, name):
    """The path the API pages document a public name under."""
    shadowed = _module(module)[name].is_module
    return f"{module}.{name}.{name}" if shadowed else f"{module}.{name}"


def _sections(obj):
    return {section.kind.value: section for section in obj.docstring.parse()}


def _signature_parameters(obj):
    if not (obj.is_class or obj.is_function):
        return []
    if obj.is_class:
        init = obj.members.get("__init__")
        if init is None or init.is_alias:
            return []
        parameters = init.parameters
    else:
        parameters = obj.parameters
    return [p.name for p in parameters if p.name not in ("self", "cls")]


def _documented_parameters(sections):
    names = set()
    for kind in ("parameters", "other parameters"):
        for item in getattr(sections.get(kind), "value", []):
            names.add(item.name.lstrip("*"))
    return names


def test_the_public_api_is_found():
    assert len(NAMES) > 60
    assert ("keras_norms.export", "export_model") in NAMES


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_docstring_is_complete(module, name):
    obj = _target(module, name)
    where = f"{module}.{name} ({obj.filepath.relative_to(ROOT)}:{obj.lineno})"
    assert obj.docstring is not None, f"{where} has no docstring"
    sections = _sections(obj)
    text = obj.docstring.value
    problems = []
    if "examples" not in sections:
        problems.append("no 'Examples:' section")
    documented = _documented_parameters(sections)
    missing = [p for p in _signature_parameters(obj) if p not in documented]
    if missing:
        problems.append(f"parameters not under 'Args:' or 'Keyword Args:': {missing}")
    is_layer = obj.is_class and any(
        "Layer" in str(base) or "Normalization" in str(base) or "Wrapper" in str(base)
        for base in obj.bases
    )
    if is_layer and "Call arguments:" not in text:
        problems.append("a layer without 'Call arguments:'")
    if obj.is_function:
        returns_value = obj.returns is not None and str(obj.returns) != "None"
        if (returns_value or re.search(r"\n\s+return \S", obj.source)) and "returns" not in sections:
            problems.append("no 'Returns:' section")
    if RAISES.search(obj.source) and "raises" not in sections:
        problems.append("raises, but has no 'Raises:' section")
    if name in PUBLISHED.get(module, ()) and not re.search(r"^\s*References?:", text, flags=re.M):
        problems.append("implements a published method but has no 'Reference:'")
    assert not problems, f"{where}: " + "; ".join(problems)


def test_the_api_reference_lists_every_public_name():
    listed = set()
    for page in (ROOT / "docs/api").glob("*.md"):
        listed |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.M))
    public = {_reference_path(module, name) for module, name in NAMES}
    assert public - listed == set(), f"public names missing from docs/api/: {sorted(public - listed)}"
    assert listed - public == set(), f"docs/api/ lists names that are not public: {sorted(listed - public)}"
