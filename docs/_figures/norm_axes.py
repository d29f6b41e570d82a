"""Draws docs/img/norm-axes.png: the elements that share one mean and variance, per norm.

Each panel is a batch of feature maps as a block of cells: N (examples) by C (channels) by H, W
(positions, drawn as one axis). The shaded cells are normalized together, with one statistic; the
figure follows Wu and He (2018), "Group Normalization", Figure 2. Run from the repository root:

    python docs/_figures/norm_axes.py            # writes docs/img/norm-axes.png
    python docs/_figures/norm_axes.py out.png    # elsewhere
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

N, C, HW = 4, 6, 5  # examples, channels, positions: small enough to see every cell
GROUP = 2  # channels per group in the group norm panel

# Which cells share the statistic of the first example / channel / group, per norm.
PANELS = {
    "Batch norm\none channel, all examples": lambda n, c, p: c == 0,
    "Layer norm\none example, all channels": lambda n, c, p: n == 0,
    "Instance norm\none example, one channel": lambda n, c, p: n == 0 and c == 0,
    f"Group norm\none example, {GROUP} channels": lambda n, c, p: n == 0 and c < GROUP,
}


def draw(path: Path) -> None:
    figure = plt.figure(figsize=(12, 3.4))
    for index, (title, shared) in enumerate(PANELS.items(), start=1):
        axes = figure.add_subplot(1, len(PANELS), index, projection="3d")
        filled = np.ones((N, C, HW), dtype=bool)
        colors = np.empty((N, C, HW), dtype=object)
        for n in range(N):
            for c in range(C):
                for p in range(HW):
                    colors[n, c, p] = "#3b75af" if shared(n, c, p) else "#e8eef5"
        axes.voxels(filled, facecolors=colors, edgecolor="#7f7f7f", linewidth=0.4)
        axes.set_xlabel("N", labelpad=-12)
        axes.set_ylabel("C", labelpad=-12)
        axes.set_zlabel("H, W", labelpad=-12)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_zticks([])
        axes.set_box_aspect((N, C, HW))
        axes.view_init(elev=20, azim=-130)
        axes.set_title(title, fontsize=10)
    figure.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=0.86, wspace=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs/img/norm-axes.png")
