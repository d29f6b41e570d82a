"""From result rows to `report.md`: tables per norm and batch size, and verdicts on the paper's claims."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

from keras_norms.study.corruptions import CORRUPTIONS, SEVERITIES

#: A norm "holds up" at the smallest batch size if it loses at most this much accuracy there
#: against its best batch size.
HOLD_UP_TOLERANCE = 0.02


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


def _variant(row: dict, varying: set[str]) -> str:
    label = row["norm"]
    if row["norm"] == "batch" and "bn_momentum" in varying:
        label += f" m={row['bn_momentum']}"
    if row["norm"] == "group" and "groups" in varying:
        label += f" g={row['groups']}"
    if "lr" in varying:
        label += f" lr={row['lr']:g}"
    return label


def group_rows(rows: Sequence[dict]) -> list[Group]:
    """Groups rows by norm variant and batch size, in order of first appearance (variants, then sizes)."""
    varying = {f for f in ("bn_momentum", "groups", "lr")
               if len({r[f] for r in rows if r[f] is not None}) > 1}
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
        f"| norm | batch size | test accuracy | seeds | epochs to {pct} val | seconds to {pct} val "
        "| train − test | corrupted | heterogeneous | ms/step |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        lines.append(
            f"| {g.variant} | {g.batch_size} | {_pm(g, 'test_accuracy')} | {len(g.rows)} "
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


def _best_per_norm(groups: list[Group], batch_size: int) -> dict[str, Group]:
    """At `batch_size`, the best variant (by mean test accuracy) of each norm."""
    best: dict[str, Group] = {}
    for g in groups:
        if g.batch_size != batch_size:
            continue
        if g.norm not in best or g.mean("test_accuracy") > best[g.norm].mean("test_accuracy"):
            best[g.norm] = g
    return best


def _acc(g: Group) -> str:
    return _pm(g, "test_accuracy")


def verdict_batch_norm_leads(groups: list[Group]) -> str:
    sizes = sorted({g.batch_size for g in groups})
    if not sizes:
        return "Not measured: no finished cells."
    large = sizes[-1]
    best = _best_per_norm(groups, large)
    if "batch" not in best or len(best) < 2:
        return "Not measured: the grid needs batch norm and at least one other norm."
    ranked = sorted(best.values(), key=lambda g: g.mean("test_accuracy"), reverse=True)
    bn = best["batch"]
    rival = ranked[1] if ranked[0] is bn else ranked[0]
    spread = max(bn.std("test_accuracy") or 0.0, rival.std("test_accuracy") or 0.0)
    close = abs(bn.mean("test_accuracy") - rival.mean("test_accuracy")) <= spread
    note = " (the difference is within one standard deviation over seeds)" if close else ""
    if ranked[0] is bn:
        return (f"Yes: at batch size {large}, the largest here, batch norm has the best test accuracy "
                f"({_acc(bn)}; next: {rival.variant} {_acc(rival)}){note}.")
    return (f"No: at batch size {large}, the largest here, {rival.variant} ({_acc(rival)}) beats "
            f"batch norm ({_acc(bn)}){note}.")


def verdict_small_batches(groups: list[Group]) -> str:
    sizes = sorted({g.batch_size for g in groups})
    if len(sizes) < 2:
        return "Not measured: the grid needs at least two batch sizes."
    small = sizes[0]
    per_size = {size: _best_per_norm(groups, size) for size in sizes}
    parts, held = [], []
    for norm in ("group", "layer", "batch"):
        at_small = per_size[small].get(norm)
        if at_small is None:
            continue
        best = max((per_size[s][norm] for s in sizes if norm in per_size[s]),
                   key=lambda g: g.mean("test_accuracy"))
        parts.append(f"{norm} {_acc(at_small)} "
                     f"(best {best.mean('test_accuracy'):.3f} at batch size {best.batch_size})")
        if norm != "batch":
            held.append(at_small.mean("test_accuracy") >= best.mean("test_accuracy") - HOLD_UP_TOLERANCE)
    if not held:
        return "Not measured: the grid has neither group nor layer norm."
    answer = "Yes" if all(held) else "Partly" if any(held) else "No"
    return (f"{answer}: at batch size {small}, test accuracy " + "; ".join(parts)
            + f" (holding up = within {HOLD_UP_TOLERANCE:.2f} of its best batch size).")


def verdict_heterogeneous(groups: list[Group]) -> str:
    sizes = sorted({g.batch_size for g in groups})
    pairs = []
    for size in sizes:
        best = _best_per_norm(groups, size)
        if "group" in best and "batch" in best:
            pairs.append((size, best["group"], best["batch"]))
    if not pairs:
        return "Not measured: the grid needs group norm and batch norm."
    wins = sum(gn.mean("heterogeneous_accuracy") > bn.mean("heterogeneous_accuracy") for _, gn, bn in pairs)
    gn_het = statistics.fmean(gn.mean("heterogeneous_accuracy") for _, gn, _ in pairs)
    bn_het = statistics.fmean(bn.mean("heterogeneous_accuracy") for _, _, bn in pairs)
    lost = lambda g: g.mean("test_accuracy") - g.mean("heterogeneous_accuracy")
    gn_drop = statistics.fmean(lost(gn) for _, gn, _ in pairs)
    bn_drop = statistics.fmean(lost(bn) for _, _, bn in pairs)
    answer = "Yes" if wins * 2 > len(pairs) else "No" if wins == 0 else "Mixed"
    return (f"{answer}: group norm beats batch norm on the heterogeneous test set at {wins} of {len(pairs)} "
            f"batch sizes (mean accuracy {gn_het:.3f} vs {bn_het:.3f}; lost against the clean test set: "
            f"{gn_drop:.3f} vs {bn_drop:.3f}).")


def verdicts(groups: list[Group]) -> list[tuple[str, str]]:
    return [
        ("Does batch norm lead at large batch sizes?", verdict_batch_norm_leads(groups)),
        ("Do group and layer norm hold up at batch size 2?", verdict_small_batches(groups)),
        ("Does group norm help on heterogeneous data?", verdict_heterogeneous(groups)),
    ]


def summary_text(rows: Sequence[dict], target: float) -> str:
    """The verdicts and the main table, as printed at the end of a run."""
    groups = group_rows(rows)
    lines = [f"- **{question}** {answer}" for question, answer in verdicts(groups)]
    return "\n".join(lines) + "\n\n" + results_table(groups, target)


def render(rows: Sequence[dict], context: dict, plots: Sequence[str] = ()) -> str:
    """The whole `report.md`. `context` describes the run (see `merge.run_context`)."""
    groups = group_rows(rows)
    first = rows[0]
    target = first["target_accuracy"]
    lr = ", ".join(sorted({f"{r['lr']:g}" for r in rows}))
    values = lambda field: ", ".join(sorted({str(r[field]) for r in rows if r[field] is not None})) or "—"
    lines = [
        f"# keras-norms compare: {first['model']} on {first['dataset']}",
        "",
        f"Measured on {context['machine']} ({context['versions']}). Data: {context['data']}; "
        f"input shape {tuple(first['input_shape'])}. Each cell trains with Adam (learning rate {lr}, "
        f"scaling: {first['lr_scaling']}) for {first['epochs']} epochs and is repeated over seeds "
        f"(mean ± standard deviation). Batch norm momentum: {values('bn_momentum')}; group norm groups: "
        f"{values('groups')} (auto: per layer, the largest divisor of its channels up to 32 that leaves "
        f"2+ channels per group). {len(rows)} runs: {context['run_minutes']:.1f} minutes in all, "
        f"{context['train_minutes']:.1f} of them training.",
        "",
        "Columns: test accuracy; epochs and training seconds until the validation accuracy first "
        f"reaches {target:g} (validation time excluded; the first epoch includes building the graph); "
        "train − test accuracy, both in inference mode "
        "(the generalization gap); accuracy on the corrupted test sets (Gaussian noise, "
        "brightness/contrast, blur; severities 1-5, mean) and on the heterogeneous test set (each "
        "example clean or corrupted at random); the median time per training step.",
        "",
        "## The paper's claims, from these numbers",
        "",
        *[f"- **{question}** {answer}" for question, answer in verdicts(groups)],
        "",
        "## Results",
        "",
        results_table(groups, target),
        "",
        "## Robustness (accuracy; corruptions averaged over severities 1-5)",
        "",
        robustness_table(groups),
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    lines += ["Every run, with its full configuration and learning curves: `results.json` "
              "(`results.csv`: the same rows without the curves).", ""]
    return "\n".join(lines)
