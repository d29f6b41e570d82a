"""PNG plots of a comparison (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
import pathlib
import statistics
import tempfile
from collections.abc import Sequence

from keras_norms.study.corruptions import CORRUPTIONS, SEVERITIES
from keras_norms.study.grid import GN_PAPER_ERRORS
from keras_norms.study.report import Group, group_rows

PLOTS = ("accuracy_vs_batch_size.png", "learning_curves.png", "robustness.png")
#: Written for runs of `--protocol gn-paper` (SGD, batch sizes from 32 down to 2).
GN_PAPER_PLOT = "error_vs_batch_size.png"


def reference_batch_size(groups: Sequence[Group]) -> int:
    """The grid's batch size closest to 32 (the learning curves and robustness plots show it)."""
    return min({g.batch_size for g in groups}, key=lambda b: (abs(math.log2(b) - 5), -b))


def _range(gs: Sequence[Group], field: str, scale: float = 1.0, offset: float = 0.0):
    """Each group's mean of `field` and, as error bars, the lowest and highest seed's values around it
    (a spread that stays in the values' range, where a standard deviation of a seed that diverged
    would reach below 0 or above 1); `scale * value + offset` for each."""
    means, below, above = [], [], []
    for g in gs:
        values = [offset + scale * r[field] for r in g.rows if r.get(field) is not None] or [math.nan]
        mean = statistics.fmean(values)
        means.append(mean)
        below.append(mean - min(values))
        above.append(max(values) - mean)
    return means, [below, above]


def _by_variant(groups):
    variants: dict[str, list[Group]] = {}
    for g in groups:
        variants.setdefault(g.variant, []).append(g)
    return variants


_LINE_STYLES = ("-", "--", ":", "-.")


def _style(variant: str, variants) -> dict:
    """A colour per norm (a label's first word) and a line style per the rest (its placement, ...)."""
    norms = list(dict.fromkeys(v.split(" ", 1)[0] for v in variants))
    settings = list(dict.fromkeys(v.partition(" ")[2] for v in variants))
    norm, _, setting = variant.partition(" ")
    return {"color": f"C{norms.index(norm) % 10}",
            "linestyle": _LINE_STYLES[settings.index(setting) % len(_LINE_STYLES)]}


def _save(fig, path: pathlib.Path) -> None:
    """Saves `fig` as a PNG through a temporary file and a rename (a report merged while another is written
    never leaves a half-written plot), then closes it."""
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)
        plt.close(fig)


def write_plots(rows: Sequence[dict], out_dir) -> list[str]:
    """Writes the `PLOTS` into `out_dir` and returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = pathlib.Path(out_dir)
    groups = group_rows(rows)
    variants = _by_variant(groups)
    reference = reference_batch_size(groups)
    sizes = sorted({g.batch_size for g in groups})

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, gs in variants.items():
        gs = sorted(gs, key=lambda g: g.batch_size)
        means, spread = _range(gs, "test_accuracy")
        ax.errorbar([g.batch_size for g in gs], means, yerr=spread, marker="o", capsize=3, label=variant)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set(xlabel="batch size", ylabel="test accuracy",
           title="Test accuracy against batch size\n(mean over seeds; bars: lowest to highest seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, out / PLOTS[0])

    many = len(variants) > 6  # then a colour per norm, a line style per setting, the legend beside
    width = 3.2 * len(sizes) + (2.6 if many else 0.0)
    fig, axes = plt.subplots(1, len(sizes), figsize=(width, 3.6 if many else 3.2), sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for variant, gs in variants.items():
            for g in gs:
                if g.batch_size == size:
                    curve = g.mean_curve("val_accuracy")
                    ax.plot(range(1, len(curve) + 1), curve, marker=".", label=variant,
                            **(_style(variant, variants) if many else {}))
        ax.set(title=f"batch size {size}", xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    if many:
        axes[0][-1].legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        axes[0][-1].legend(fontsize="small")
    fig.suptitle("Learning curves (mean over seeds)")
    fig.tight_layout()
    _save(fig, out / PLOTS[1])

    written = list(PLOTS[:2])
    if any(r.get("heterogeneous_accuracy") is not None for r in rows):  # token ids have no corruptions
        _robustness(plt, variants, reference, out / PLOTS[2])
        written.append(PLOTS[2])
    gn_paper_sizes = set(GN_PAPER_ERRORS["batch"])
    if rows and rows[0].get("optimizer") == "sgd" and len(sizes) > 1 and set(sizes) <= gn_paper_sizes:
        _error_vs_batch_size(plt, variants, sizes, out / GN_PAPER_PLOT)
        written.append(GN_PAPER_PLOT)
    return written


def _robustness(plt, variants, reference, path) -> None:
    fig, axes = plt.subplots(1, len(CORRUPTIONS), figsize=(3.4 * len(CORRUPTIONS), 3.2), sharey=True)
    for ax, corruption in zip(axes, CORRUPTIONS, strict=True):
        for variant, gs in variants.items():
            for g in gs:
                if g.batch_size == reference:
                    label = f"{variant} (heterogeneous {g.mean('heterogeneous_accuracy'):.2f})"
                    ax.plot([0, *SEVERITIES], [g.mean("test_accuracy"), *g.severity_curve(corruption)],
                            marker="o", label=label)
        ax.set(title=corruption.replace("_", " "), xlabel="severity (0 = clean)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize="x-small")
    fig.suptitle(f"Robustness at batch size {reference}")
    fig.tight_layout()
    _save(fig, path)


def _error_vs_batch_size(plt, variants, sizes, path) -> None:
    """Wu and He's Figure 1 for this run: error against batch size (decreasing), theirs in its own panel."""
    fig, (ours, theirs) = plt.subplots(1, 2, figsize=(10, 4))
    for variant, gs in variants.items():
        gs = sorted(gs, key=lambda g: -g.batch_size)
        errors, spread = _range(gs, "test_accuracy", scale=-100.0, offset=100.0)
        ours.errorbar([g.batch_size for g in gs], errors, yerr=spread, marker="o", capsize=3, label=variant)
    for norm, errors in GN_PAPER_ERRORS.items():
        batch_sizes = sorted(errors, reverse=True)
        theirs.plot(batch_sizes, [errors[b] for b in batch_sizes], marker="o", label=norm)
    for ax, title, ylabel in ((ours, "This run (mean; bars: lowest to highest seed)", "test error (%)"),
                              (theirs, "Wu and He (2018): ResNet-50, ImageNet", "validation error (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sizes, reverse=True), [str(b) for b in sorted(sizes, reverse=True)])
        ax.invert_xaxis()
        ax.set(xlabel="batch size per device", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Error against batch size (Wu and He's Figure 1 protocol)")
    fig.tight_layout()
    _save(fig, path)
