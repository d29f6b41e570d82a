"""From result rows to `report.md`: tables per norm and batch size, and verdicts on the paper's claims."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

from keras_norms.study.corruptions import CORRUPTIONS, SEVERITIES
from keras_norms.study.grid import GN_PAPER_ERRORS, TRANSFORMER_DEPTH
from keras_norms.study.verdicts import MATCH_MARGIN, verdicts


@dataclasses.dataclass
class Group:
    """The seeds of one norm variant at one batch size, summarized."""

    norm: str
    variant: str
    batch_size: int
    rows: list[dict]

    def mean(self, field: str) -> float | None:
        values = [r[field] for r in self.rows if r.get(field) is not None]
        return statistics.fmean(values) if values else None

    def std(self, field: str) -> float | None:
        values = [r[field] for r in self.rows if r.get(field) is not None]
        return statistics.stdev(values) if len(values) > 1 else None

    def reached(self) -> int:
        return sum(r.get("epochs_to_target") is not None for r in self.rows)

    def severity_curve(self, corruption: str) -> list[float | None]:
        return [self.mean(f"acc_{corruption}_s{s}") for s in SEVERITIES]

    def corruption_mean(self, corruption: str) -> float | None:
        values = [v for v in self.severity_curve(corruption) if v is not None]
        return statistics.fmean(values) if values else None

    def mean_curve(self, name: str) -> list[float]:
        curves = [r["curves"][name] for r in self.rows if r.get("curves")]
        length = min((len(c) for c in curves), default=0)
        return [statistics.fmean(c[i] for c in curves if c[i] is not None) for i in range(length)
                if any(c[i] is not None for c in curves)]


#: The transformer's settings and the warm-up as rows read them: QK-norm None is "none", and a row
#: from before a setting existed has its default.
_SETTINGS = {"qk_norm": lambda row: row.get("qk_norm") or "none",
             "warmup_epochs": lambda row: row.get("warmup_epochs") or 0,
             "depth": lambda row: row.get("depth") or TRANSFORMER_DEPTH}


def _setting(row: dict, field: str):
    return _SETTINGS[field](row) if field in _SETTINGS else row.get(field)


def _variant(row: dict, varying: set[str]) -> str:
    label = row["norm"]
    if row.get("placement") is not None and "placement" in varying:
        label += f" {row['placement']}-norm"
    if "qk_norm" in varying:
        label += f" qk-norm={_setting(row, 'qk_norm')}"
    if "warmup_epochs" in varying:
        label += f" warm-up={_setting(row, 'warmup_epochs')}"
    if "depth" in varying:
        label += f" depth={_setting(row, 'depth')}"
    if row["norm"] == "batch" and "bn_momentum" in varying:
        label += f" m={row['bn_momentum']}"
    if row["norm"] == "group" and "groups" in varying:
        label += f" g={row['groups']}"
    if "lr" in varying:
        label += f" lr={row['lr']:g}"
    return label


def group_rows(rows: Sequence[dict]) -> list[Group]:
    """Groups rows by norm variant and batch size, in order of first appearance (variants, then sizes)."""
    fields = ("bn_momentum", "groups", "lr", "placement", "qk_norm", "warmup_epochs", "depth")
    varying = {f for f in fields if len({_setting(r, f) for r in rows if _setting(r, f) is not None}) > 1}
    groups: dict[tuple, Group] = {}
    for row in rows:
        variant = _variant(row, varying)
        key = (variant, row["batch_size"])
        groups.setdefault(key, Group(row["norm"], variant, row["batch_size"], [])).rows.append(row)
    variants = list(dict.fromkeys(g.variant for g in groups.values()))
    return sorted(groups.values(), key=lambda g: (variants.index(g.variant), g.batch_size))


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pm(group: Group, field: str) -> str:
    mean, std = group.mean(field), group.std(field)
    return _fmt(mean) if std is None else f"{mean:.3f} ± {std:.3f}"


def _reach(group: Group, field: str, digits: int) -> str:
    reached = group.reached()
    if not reached:
        return "not reached"
    text = _fmt(group.mean(field), digits)
    return text if reached == len(group.rows) else f"{text} ({reached}/{len(group.rows)} seeds)"


def results_table(groups: list[Group], target: float) -> str:
    """The main table: one line per norm variant and batch size."""
    pct = f"{100 * target:g}%"
    lines = [
        f"| norm | batch size | test accuracy | recalibrated | seeds | epochs to {pct} val "
        f"| seconds to {pct} val | train − test | corrupted | heterogeneous | ms/step |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        lines.append(
            f"| {g.variant} | {g.batch_size} | {_pm(g, 'test_accuracy')} "
            f"| {_fmt(g.mean('test_accuracy_recalibrated'))} | {len(g.rows)} "
            f"| {_reach(g, 'epochs_to_target', 1)} | {_reach(g, 'seconds_to_target', 1)} "
            f"| {_fmt(g.mean('generalization_gap'))} | {_fmt(g.mean('corrupted_accuracy'))} "
            f"| {_fmt(g.mean('heterogeneous_accuracy'))} | {_fmt(g.mean('ms_per_step'), 2)} |"
        )
    return "\n".join(lines)


def robustness_table(groups: list[Group]) -> str:
    """Accuracy per corruption (mean over severities) and on the heterogeneous set."""
    names = list(CORRUPTIONS)
    lines = [
        "| norm | batch size | clean | " + " | ".join(n.replace("_", " ") for n in names)
        + " | heterogeneous |",
        "|---|---:|" + "---:|" * (len(names) + 2),
    ]
    for g in groups:
        cells = [_fmt(g.mean("test_accuracy"))] + [_fmt(g.corruption_mean(n)) for n in names]
        lines.append(f"| {g.variant} | {g.batch_size} | " + " | ".join(cells)
                     + f" | {_fmt(g.mean('heterogeneous_accuracy'))} |")
    return "\n".join(lines)


def summary_text(rows: Sequence[dict], target: float) -> str:
    """The verdicts and the main table, as printed at the end of a run."""
    groups = group_rows(rows)
    lines = [f"- **{question}** {answer}" for question, answer in verdicts(rows)]
    return "\n".join(lines) + "\n\n" + results_table(groups, target)


def gn_paper_table(groups: list[Group]) -> str:
    """Our test error (%) by batch size beside Wu and He's published ImageNet ResNet-50 error.

    Theirs is another dataset and model: the columns are for comparing the
    shape of the curves (does batch norm's error rise at small batches while
    group norm's stays flat), not the values.
    """
    sizes = sorted({g.batch_size for g in groups}, reverse=True)
    norms = list(dict.fromkeys(g.variant for g in groups))
    ours = {(g.variant, g.batch_size): g for g in groups}
    head = "| norm | " + " | ".join(f"{b}: ours | {b}: ImageNet" for b in sizes) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(sizes))]
    for norm in norms:
        cells = []
        for size in sizes:
            group = ours.get((norm, size))
            accuracy = None if group is None else group.mean("test_accuracy")
            published = GN_PAPER_ERRORS.get(norm, {}).get(size)
            cells += [_fmt(None if accuracy is None else 100 * (1 - accuracy), 1), _fmt(published, 1)]
        lines.append(f"| {norm} | " + " | ".join(cells) + " |")
    return ("Test error (%) here, beside the ImageNet validation error of ResNet-50 that Wu and He "
            "report for the same batch sizes per device (8 devices; another dataset and model, so compare "
            "the shapes of the curves, not the values).\n\n" + "\n".join(lines))


def render(rows: Sequence[dict], context: dict, plots: Sequence[str] = ()) -> str:
    """The whole `report.md`. `context` describes the run (see `merge.run_context`)."""
    groups = group_rows(rows)
    first = rows[0]
    target = first["target_accuracy"]
    lr = ", ".join(sorted({f"{r['lr']:g}" for r in rows}))
    values = lambda field: ", ".join(sorted({str(r[field]) for r in rows if r[field] is not None})) or "—"
    optimizer = "SGD with momentum 0.9" if first.get("optimizer") == "sgd" else "Adam"
    warmups = sorted({_setting(r, "warmup_epochs") for r in rows})
    warmup = ("" if warmups == [0] else
              f", linear warm-up over the first {' or '.join(map(str, warmups))} epochs, step by step")
    transformer = ""
    if first["model"] == "transformer":
        depth = _setting(first, "depth")
        transformer = (f" The transformer has {depth} block{'s' if depth != 1 else ''}; QK-norm: "
                       f"{', '.join(sorted({_setting(r, 'qk_norm') for r in rows}))}.")
    lines = [
        f"# keras-norms compare: {first['model']} on {first['dataset']}",
        "",
        f"Measured on {context['machine']} ({context['versions']}). Data: {context['data']}; "
        f"input shape {tuple(first['input_shape'])}.{transformer} Each cell trains with {optimizer} "
        f"(learning rate {lr}, scaling: {first['lr_scaling']}{warmup}) for {first['epochs']} epochs and is "
        "repeated over seeds "
        f"(mean ± standard deviation). Batch norm momentum: {values('bn_momentum')}; group norm groups: "
        f"{values('groups')} (auto: per layer, the largest divisor of its channels up to 32 that leaves "
        f"2+ channels per group). {len(rows)} runs: {context['run_minutes']:.1f} minutes in all, "
        f"{context['train_minutes']:.1f} of them training.",
        "",
        "Columns: test accuracy; for batch norm, the test accuracy with population statistics "
        "recomputed over the training set at the training batch size (`recalibrate_batch_norms`) "
        "instead of the moving averages; epochs and training seconds until the validation accuracy first "
        f"reaches {target:g} (validation time excluded; the first epoch includes building the graph); "
        "train − test accuracy, both in inference mode "
        "(the generalization gap); accuracy on the corrupted test sets (Gaussian noise, "
        "brightness/contrast, blur; severities 1-5, mean) and on the heterogeneous test set (each "
        "example clean or corrupted at random); the median time per training step.",
        "",
        "## The paper's claims, from these numbers",
        "",
        "Each claim is decided from the paired differences between runs of the same seed, with a "
        "95% t-interval: yes or no only when the whole interval is on one side of zero. Whether DyT or Derf "
        f"matches layer norm is a question of equivalence: yes when the whole interval lies within "
        f"±{MATCH_MARGIN:.2f} test accuracy, no when it lies wholly beyond that margin.",
        "",
        *[f"- **{question}** {answer}" for question, answer in verdicts(rows, measured_only=False)],
        "",
        "## Results",
        "",
        results_table(groups, target),
        "",
    ]
    if any(r.get("heterogeneous_accuracy") is not None for r in rows):  # token ids have no corruptions
        lines += ["## Robustness (accuracy; corruptions averaged over severities 1-5)", "",
                  robustness_table(groups), ""]
    sizes = {r["batch_size"] for r in rows}
    if first.get("optimizer") == "sgd" and len(sizes) > 1 and sizes <= set(GN_PAPER_ERRORS["batch"]):
        # A run of `--protocol gn-paper` (or of its settings).
        lines += ["## Beside Wu and He (2018), Figure 1", "", gn_paper_table(groups), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    lines += ["Every run, with its full configuration and learning curves: `results.json` "
              "(`results.csv`: the same rows without the curves).", ""]
    return "\n".join(lines)
