"""Draws docs/img/speed-ratios.png: Keras' time over keras-norms' per norm, from BENCHMARKS.json.

One group of bars per norm: the training step (float32, the reference shapes) on TensorFlow in a
graph and under XLA, on JAX and on PyTorch, each ratio measured side by side in the run that wrote
BENCHMARKS.json (`make bench`). Above the line at 1, keras-norms is faster. Run from the
repository root after `make bench`:

    python docs/_figures/speed_ratios.py                     # BENCHMARKS.json -> docs/img/speed-ratios.png
    python docs/_figures/speed_ratios.py RESULTS.json OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NORMS = ("batch", "group", "instance", "layer", "rms")
SERIES = {  # label -> (section, XLA or None for any)
    "TensorFlow, graph": ("main", False),
    "TensorFlow, XLA": ("main", True),
    "JAX (jit)": ("jax", None),
    "PyTorch (eager)": ("torch", None),
}


def ratios(results: dict) -> dict[str, list[float | None]]:
    """Keras / keras-norms for each series and norm: the float32 training step at the reference shapes."""
    found = {}
    for label, (section, xla) in SERIES.items():
        values = []
        for norm in NORMS:
            rows = [r for r in results.get(section, []) if r["norm"] == norm and r["mode"] == "train"
                    and r["dtype"] == "float32" and r.get("shapes", "reference") == "reference"
                    and (xla is None or r["xla"] == xla)]
            values.append(rows[0]["ms"]["keras"] / rows[0]["ms"]["keras-norms"] if rows else None)
        found[label] = values
    return found


def draw(results: dict, path: Path) -> None:
    found = ratios(results)
    figure, axes = plt.subplots(figsize=(8.5, 3.6))
    width = 0.8 / len(found)
    positions = np.arange(len(NORMS))
    for index, (label, values) in enumerate(found.items()):
        heights = [np.nan if v is None else v for v in values]
        bars = axes.bar(positions + (index - (len(found) - 1) / 2) * width, heights, width, label=label)
        axes.bar_label(bars, labels=["" if v is None else f"{v:.1f}" for v in values], fontsize=7)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(positions, [{"rms": "RMS"}.get(n, n) for n in NORMS])
    axes.set_ylabel("Keras' time / keras-norms'")
    machine = results.get("machine", {})
    axes.set_title(f"Training step, float32, reference shapes ({machine.get('cpu', 'CPU')}, "
                   f"{machine.get('usable_cores', '?')} cores)", fontsize=9)
    axes.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "BENCHMARKS.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs/img/speed-ratios.png"
    draw(json.loads(source.read_text()), target)
