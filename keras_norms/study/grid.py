"""The grid of a comparison: its cells, the default and quick presets, and the checks of a grid."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import sys

#: Under `lr_scaling="linear"`, the learning rate is `lr * batch_size / REFERENCE_BATCH_SIZE`.
REFERENCE_BATCH_SIZE = 32

LR_SCALINGS = ("none", "linear")
OPTIMIZERS = ("adam", "sgd")
PLACEMENTS = ("pre", "post", "peri", "deepnorm")
#: `--qk-norm`: the transformer's QK-norm (`"none"`: plain attention; a cell's `qk_norm` is then None).
QK_NORMS = ("none", "rms", "layer")
#: The transformer factory's number of blocks: a cell at this depth keeps `depth=None` (and its old key).
TRANSFORMER_DEPTH = 2
#: Momentum of the SGD optimizer (`optimizer="sgd"`), as in Wu and He's protocol.
SGD_MOMENTUM = 0.9


class GridError(ValueError):
    """A grid that cannot run (an unknown name, a batch size too large, ...); the message says which."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of the grid: a configuration and a seed.

    `bn_momentum` is set for batch norm only and `groups` for group norm only
    (an int, or `"auto"` for the model's per-layer default), so the grid does
    not repeat the other norms for values they ignore. `placement`, `qk_norm`
    (None: no QK-norm) and `depth` (None: the factory's `TRANSFORMER_DEPTH`)
    are the transformer's; `warmup_epochs` is the linear learning-rate warm-up
    of any model (0: none).
    """

    model: str
    dataset: str
    norm: str
    batch_size: int
    lr: float
    lr_scaling: str
    bn_momentum: float | None
    groups: int | str | None
    epochs: int
    seed: int
    input_shape: tuple[int, ...]
    target_accuracy: float
    train_size: int | None
    split_seed: int = 0
    optimizer: str = "adam"
    placement: str | None = None
    qk_norm: str | None = None
    warmup_epochs: int = 0
    depth: int | None = None

    @property
    def learning_rate(self) -> float:
        """The learning rate actually used (after the batch-size scaling)."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / REFERENCE_BATCH_SIZE
        return self.lr

    @property
    def norm_name(self) -> str:
        """The registry name of `norm` (a variant's label without its arguments)."""
        return parse_norm(self.norm)[0]

    def norm_options(self) -> dict:
        """Constructor arguments of the norm layers: the variant's own, then the grid's."""
        options = dict(parse_norm(self.norm)[1])
        if self.bn_momentum is not None:
            options["momentum"] = self.bn_momentum
        if isinstance(self.groups, int):
            options["groups"] = self.groups
        return options

    def config(self) -> dict:
        """The full configuration, JSON-ready (`input_shape` as a list)."""
        config = dataclasses.asdict(self)
        config["input_shape"] = list(self.input_shape)
        config["learning_rate"] = self.learning_rate
        return config

    def model_options(self) -> dict:
        """Options of `build_model` besides the norm's (the transformer's placement, QK-norm and depth)."""
        options = {"placement": self.placement, "qk_norm": self.qk_norm, "depth": self.depth}
        return {k: v for k, v in options.items() if v is not None}

    @property
    def key(self) -> str:
        """A stable id of this configuration and seed: finished rows are matched by it.

        Settings at their defaults that older grids did not have (`optimizer`,
        `placement`, `qk_norm`, `warmup_epochs`, `depth`) are left out, so their
        finished rows keep their keys.
        """
        config = self.config()
        for field, default in NEW_FIELD_DEFAULTS.items():
            if config[field] == default:
                del config[field]
        text = json.dumps(config, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.norm} bs={self.batch_size} seed={self.seed}"


#: Cell fields added after the first grids, with the default that leaves them out of `Cell.key`.
NEW_FIELD_DEFAULTS = {"optimizer": "adam", "placement": None, "qk_norm": None, "warmup_epochs": 0,
                      "depth": None}


@dataclasses.dataclass
class GridSpec:
    """What to compare. `cells()` expands it; the defaults are the default grid of docs/guides/study.md.

    Examples:
        >>> from keras_norms.study.grid import GridSpec
        >>> spec = GridSpec(norms=("batch", "group"), batch_sizes=(8, 32), seeds=(0,))
        >>> len(spec.cells(input_shape=(32, 32, 1), target_accuracy=0.9))
        4
    """

    model: str = "lenet"
    dataset: str = "digits"
    norms: tuple[str, ...] = ("batch", "layer", "group", "instance", "none")
    batch_sizes: tuple[int, ...] = (2, 8, 32, 128)
    epochs: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    lrs: tuple[float, ...] = (1e-3,)
    lr_scaling: str = "none"
    bn_momentums: tuple[float, ...] = (0.9,)
    groups: tuple[int | str, ...] = ("auto",)
    target_accuracy: float | None = None
    input_shape: tuple[int, ...] | None = None
    train_size: int | None = None
    data_dir: str | None = None
    split_seed: int = 0
    optimizer: str = "adam"
    placements: tuple[str, ...] = ("pre",)
    protocol: str | None = None
    qk_norms: tuple[str, ...] = ("none",)
    warmups: tuple[int, ...] = (0,)
    depth: int | None = None

    def cells(self, *, input_shape, target_accuracy: float) -> list[Cell]:
        """All cells, seed by seed (an interrupted run has whole comparisons for the first seeds)."""
        cells = []
        transformer = self.model == "transformer"
        placements = self.placements if transformer else (None,)
        qk_norms = tuple(None if q == "none" else q for q in self.qk_norms) if transformer else (None,)
        depth = self.depth if transformer and self.depth != TRANSFORMER_DEPTH else None
        settings = [(p, q, w) for p in placements for q in qk_norms for w in self.warmups]
        for seed in self.seeds:
            for placement, qk_norm, warmup in settings:
                for norm in self.norms:
                    name, arguments = parse_norm(norm)
                    batch_norm, takes_groups = grid_facts(name)
                    # A variant that sets momentum or groups itself is not repeated over the grid's values.
                    momentums = (self.bn_momentums if batch_norm and "momentum" not in arguments
                                 else (None,))
                    groups = self.groups if takes_groups and "groups" not in arguments else (None,)
                    for lr in self.lrs:
                        for momentum in momentums:
                            for group_count in groups:
                                for batch_size in self.batch_sizes:
                                    cells.append(Cell(
                                        model=self.model, dataset=self.dataset, norm=norm,
                                        batch_size=batch_size, lr=lr, lr_scaling=self.lr_scaling,
                                        bn_momentum=momentum, groups=group_count, epochs=self.epochs,
                                        seed=seed, input_shape=tuple(input_shape),
                                        target_accuracy=target_accuracy, train_size=self.train_size,
                                        split_seed=self.split_seed, optimizer=self.optimizer,
                                        placement=placement, qk_norm=qk_norm,
                                        warmup_epochs=warmup, depth=depth,
                                    ))
        return cells


#: `grid_facts` of the built-in names (the registry's and the transformer's `adaln`), for a process that has
#: not imported the layers; tests/test_cli.py checks them against the registry.
BUILTIN_GRID_FACTS = {
    "batch": (True, False), "layer": (False, False), "group": (False, True), "instance": (False, False),
    "rms": (False, False), "frn": (False, False), "switchable": (False, False), "none": (False, False),
    "dyt": (False, False), "derf": (False, False), "adaln": (False, False),
}


def grid_facts(name: str) -> tuple[bool, bool]:
    """Whether the grid's norm `name` is a batch norm and whether it takes `groups` (what `GridSpec.cells`
    repeats it over): the registry's answer (`describe_norm`) where the layers are imported, else, for a
    built-in name, `BUILTIN_GRID_FACTS`, so that `keras-norms report` lists a grid's cells without
    importing Keras and TensorFlow."""
    if "keras_norms.registry" not in sys.modules and name in BUILTIN_GRID_FACTS:
        return BUILTIN_GRID_FACTS[name]
    described = describe_norm(name)
    return described.batch_norm, described.takes_groups


def describe_norm(name: str):
    """The registry's `keras_norms.Norm` for a grid's norm name (`"adaln"`: adaptive layer norm).

    Raises:
        GridError: `name` is neither registered nor one of the transformer's extra names.
    """
    import keras_norms
    from keras_norms.models.transformer import EXTRA_NORMS

    if name == "adaln":
        return keras_norms.describe(keras_norms.AdaptiveLayerNormalization)
    try:
        return keras_norms.describe(name)
    except (TypeError, ValueError):
        valid = keras_norms.names() + list(EXTRA_NORMS)
        raise GridError(f"unknown norm {name!r}; valid names: {', '.join(valid)}") from None


def parse_norm(label: str) -> tuple[str, dict]:
    """A norm of the grid: a registry name, or a variant with constructor arguments.

    Raises:
        GridError: `label` is neither `name` nor `name(argument=value, ...)`
            with literal values.

    Examples:
        >>> parse_norm("group(groups=8)")
        ('group', {'groups': 8})
        >>> parse_norm("batch")
        ('batch', {})
    """
    problem = (f"bad norm {label!r}: write a registry name or a variant with literal arguments, "
               "e.g. batch(renorm=True) or group(groups=8)")
    try:
        node = ast.parse(label.strip(), mode="eval").body
    except SyntaxError:
        raise GridError(problem) from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        raise GridError(problem)
    try:
        arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise GridError(problem) from None
    if None in arguments:  # **kwargs
        raise GridError(problem)
    return node.func.id, arguments


#: `keras-norms compare --quick`: about a minute on 2 CPU cores.
QUICK = {"norms": ("batch", "layer", "group", "none"), "batch_sizes": (2, 64), "epochs": 3, "seeds": (0,)}

#: `--protocol gn-paper`: Wu and He (2018), Figure 1. Batch sizes per device 32 to 2, SGD with
#: momentum 0.9, the learning rate scaled linearly with the batch size (0.1 at 32, as their 0.1
#: per 256 images over 8 devices), a fixed number of epochs; batch, group, layer and instance norm.
PROTOCOLS = {
    "gn-paper": {"norms": ("batch", "group", "layer", "instance"), "batch_sizes": (32, 16, 8, 4, 2),
                 "optimizer": "sgd", "lrs": (0.1,), "lr_scaling": "linear", "seeds": (0, 1, 2)},
}

#: Wu and He (2018), Figure 1 and Table 1: ImageNet validation error (%) of ResNet-50 trained with
#: 8 GPUs, by images per GPU. Printed beside a gn-paper run for comparison; never plotted on its axes.
GN_PAPER_ERRORS = {
    "batch": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "group": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    "layer": {32: 25.3},
    "instance": {32: 28.4},
}


def check_names(spec: GridSpec) -> None:
    """Raises `GridError` for unknown model, norm or dataset names and bad values (before any data loads)."""
    import keras_norms
    from keras_norms.models import model_names
    from keras_norms.models.transformer import EXTRA_NORMS
    from keras_norms.study.datasets import DATASETS

    if spec.model not in model_names():
        raise GridError(f"unknown model {spec.model!r}; valid names: {', '.join(model_names())}")
    if spec.dataset not in DATASETS:
        raise GridError(f"unknown dataset {spec.dataset!r}; valid names: {', '.join(DATASETS)}")
    valid = keras_norms.names() + (list(EXTRA_NORMS) if spec.model == "transformer" else [])
    unknown = [n for n in spec.norms if parse_norm(n)[0] not in valid]
    if unknown:
        raise GridError(f"unknown norm {', '.join(map(repr, unknown))}; valid names: {', '.join(valid)}")
    if spec.optimizer not in OPTIMIZERS:
        raise GridError(f"unknown --optimizer {spec.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    bad = [p for p in spec.placements if p not in PLACEMENTS]
    if bad or not spec.placements:
        raise GridError(f"--placement takes {', '.join(PLACEMENTS)}, got {','.join(spec.placements)}")
    if spec.placements != ("pre",) and spec.model != "transformer":
        raise GridError(f"--placement is for --model transformer, got --model {spec.model}")
    bad = [q for q in spec.qk_norms if q not in QK_NORMS]
    if bad or not spec.qk_norms:
        raise GridError(f"--qk-norm takes {', '.join(QK_NORMS)}, got {','.join(spec.qk_norms)}")
    if spec.qk_norms != ("none",) and spec.model != "transformer":
        raise GridError(f"--qk-norm is for --model transformer, got --model {spec.model}")
    if spec.depth is not None:
        if isinstance(spec.depth, bool) or not isinstance(spec.depth, int) or spec.depth < 1:
            raise GridError(f"--depth must be a positive int, got {spec.depth}")
        if spec.model != "transformer":
            raise GridError(f"--depth is for --model transformer, got --model {spec.model}")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in spec.warmups):
        raise GridError(f"--warmup values must be ints >= 0 (epochs), got {','.join(map(str, spec.warmups))}")
    if any(w > spec.epochs for w in spec.warmups):
        raise GridError(f"--warmup {max(spec.warmups)} is longer than the training (--epochs {spec.epochs})")
    if spec.lr_scaling not in LR_SCALINGS:
        raise GridError(f"unknown --lr-scaling {spec.lr_scaling!r}; use one of {', '.join(LR_SCALINGS)}")
    if spec.target_accuracy is not None and not 0.0 < spec.target_accuracy <= 1.0:
        raise GridError(f"--target-accuracy must be in (0, 1], got {spec.target_accuracy}")
    lists = {"--norms": spec.norms, "--batch-sizes": spec.batch_sizes, "--seeds": spec.seeds,
             "--lr": spec.lrs, "--bn-momentum": spec.bn_momentums, "--groups": spec.groups,
             "--placement": spec.placements, "--qk-norm": spec.qk_norms, "--warmup": spec.warmups}
    for name, values in lists.items():
        if not values:
            raise GridError(f"{name} needs at least one value")
        if len(set(values)) != len(values):
            raise GridError(f"{name} lists a value twice: {','.join(map(str, values))}")
    if any(not 0.0 <= m <= 1.0 for m in spec.bn_momentums):
        raise GridError(f"--bn-momentum values must be in [0, 1], got {lists['--bn-momentum']}")
    if any(lr <= 0 for lr in spec.lrs):
        raise GridError(f"--lr values must be > 0, got {','.join(map(str, spec.lrs))}")


def check_models(spec: GridSpec, input_shape, num_classes: int, model_options: dict | None = None) -> None:
    """Builds each distinct model of the grid once, so bad options fail before any training."""
    from keras_norms.models import build_model

    seen = set()
    for cell in spec.cells(input_shape=input_shape, target_accuracy=1.0):
        options = {**cell.norm_options(), **cell.model_options()}
        signature = (cell.norm, repr(sorted(options.items())))
        if signature in seen:
            continue
        seen.add(signature)
        try:
            build_model(spec.model, cell.norm_name, input_shape=input_shape, num_classes=num_classes,
                        **options, **(model_options or {}))
        except (ValueError, TypeError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            message = f"cannot build {spec.model} with norm {cell.norm!r} {options or ''}: {detail}"
            raise GridError(message) from None
