"""The evaluation's figures as PNGs, written through :mod:`core.storage` (so ``s3://`` works).

* :func:`ar_an_figure` the AR-AN curve;
* :func:`per_class_ap_figure` AP of each class (bars at tIoU 0.5 and averaged over 0.5:0.95);
* :func:`confusion_figure` ground-truth class against the label that found it;
* :func:`timeline_figure` for a few videos, ground truth against the top proposals.

Drawn on bare :class:`matplotlib.figure.Figure` objects with the Agg canvas: no pyplot, no
global backend switch, safe in Ray workers and tests. Matplotlib is imported by the first
figure (:func:`new_figure`), not with this module: the training worker imports the modules
that name these functions (0.6 s of its start on 2 cores) and draws nothing itself.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import storage
from core.eval.annotations import VideoAnnotation
from core.eval.confusion import MISSED, ConfusionMatrix
from core.eval.detection import DetectionResult
from core.eval.proposals import ARANResult

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def colormap(name: str) -> Colormap:
    """Matplotlib's colormap ``name``."""
    from matplotlib import colormaps

    return colormaps[name]


MANY_CLASSES = 40
"""Beyond this many classes the class figures place their axes from the labels' lengths
instead of ``tight_layout``, which measures every tick label (1.2 s of the 3 s the 200-class
confusion matrix took on 2 cores)."""


def label_inches(names: Sequence[str], fontsize: float) -> float:
    """About the length of the longest of ``names`` at ``fontsize`` points, in inches."""
    return max((len(n) for n in names), default=0) * fontsize * 0.6 / 72


def set_margins(
    fig: Figure, left: float, bottom: float, right: float = 0.2, top: float = 0.2
) -> None:
    """The subplot area's margins, in inches."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height
    )


def ar_an_figure(result: ARANResult, title: str | None = None) -> Figure:
    """Recall at each tIoU threshold and their average against the average number of
    proposals per video, as MMAction2's BMN demo and ActivityNet's devkit plot it."""
    fig = new_figure((7, 5))
    ax = fig.add_subplot(1, 1, 1)
    x_K = result.proposals_per_video_K
    colors = colormap("viridis")
    num_t = len(result.tiou_thresholds_T)
    for t, (tiou, recall_K) in enumerate(
        zip(result.tiou_thresholds_T, result.recall_TK, strict=True)
    ):
        color = colors(t / max(num_t - 1, 1))
        ax.plot(x_K, recall_K, color=color, linewidth=1.0, label=f"tIoU={tiou:.2f}")
    ax.plot(
        x_K,
        result.avg_recall_K,
        color="black",
        linewidth=2.5,
        label=f"average (AUC={result.auc:.2f}%)",
    )
    ax.set_xlabel("Average number of proposals per video")
    ax.set_ylabel("Average recall")
    ax.set_xlim(0, float(x_K[-1]))
    ax.set_ylim(0, 1)
    ax.grid(True, linestyle=":", linewidth=0.5)
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    ax.set_title(
        title
        or f"AR@1 {result.ar_at(1):.3f}  AR@10 {result.ar_at(10):.3f}  "
        f"AR@100 {result.ar_at(100):.3f}  AUC {result.auc:.2f}"
    )
    fig.tight_layout()
    return fig


def per_class_ap_figure(detection: DetectionResult) -> Figure:
    """Horizontal bars per class: AP at tIoU 0.5 and AP averaged over the thresholds."""
    names = detection.class_names
    fig = new_figure((7, 1.2 + 0.32 * max(len(names), 1)))
    ax = fig.add_subplot(1, 1, 1)
    y_C = np.arange(len(names))
    at_half = detection.per_class_ap_at(0.5)
    mean = detection.per_class_ap()
    ax.barh(y_C - 0.2, [at_half[n] for n in names], height=0.4, label="AP@0.5")
    ax.barh(y_C + 0.2, [mean[n] for n in names], height=0.4, label="AP (0.5:0.95)")
    ax.set_yticks(y_C, names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first class on top, no blank rows around the bars
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision")
    ax.grid(True, axis="x", linestyle=":", linewidth=0.5)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(
        f"mAP {detection.average_map:.3f}  mAP@0.5 {detection.map_at(0.5):.3f}", fontsize=9
    )
    if len(names) <= MANY_CLASSES:
        fig.tight_layout()
    else:
        set_margins(fig, left=label_inches(names, 7) + 0.25, bottom=0.55, top=0.35)
    return fig


def confusion_figure(confusion: ConfusionMatrix) -> Figure:
    """The confusion matrix, rows normalised to the share of each class's segments."""
    counts_CC1 = confusion.counts_CC1
    C = len(confusion.class_names)
    rows_C1 = counts_CC1.sum(axis=1, keepdims=True)
    share_CC1 = counts_CC1 / np.maximum(rows_C1, 1)
    # up to 40 classes every cell is annotated with its count; beyond, the figure stops
    # growing (ActivityNet's 200 classes would be a 9,000-pixel square) and only shades
    size = 2.5 + 0.45 * min(C, 40) + 0.08 * max(C - 40, 0)
    fontsize = 7 if C <= 40 else 4
    fig = new_figure((size + 1.5, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share_CC1, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    for i, j in np.ndindex(counts_CC1.shape) if C <= 40 else ():
        if counts_CC1[i, j]:
            color = "white" if share_CC1[i, j] > 0.6 else "black"
            ax.text(j, i, str(counts_CC1[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(np.arange(C + 1), [*confusion.class_names, MISSED], rotation=60, ha="right",
                  fontsize=fontsize)  # fmt: skip
    ax.set_yticks(np.arange(C), confusion.class_names, fontsize=fontsize)
    ax.set_xlabel(f"label of the best proposal with tIoU >= {confusion.tiou:g}")
    ax.set_ylabel("ground truth")
    ax.set_title(f"label accuracy of found segments {confusion.label_accuracy():.3f}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the class's segments")
    if C <= MANY_CLASSES:
        fig.tight_layout()
    else:  # the labels' extents, estimated instead of measured: tight_layout took 1.2 s of 3
        names = [*confusion.class_names, MISSED]
        text = label_inches(names, fontsize)
        set_margins(fig, left=text + 0.45, bottom=text * 0.87 + 0.45, right=0.7, top=0.35)
    return fig


def class_colors(names: Sequence[str]) -> Mapping[str, tuple]:
    """The colour :func:`timeline_figure` gives each class."""
    colors = colormap("tab10" if len(names) <= 10 else "tab20")
    return {name: colors(i % colors.N) for i, name in enumerate(names)}


def timeline_figure(
    videos: Sequence[VideoAnnotation],
    proposals: pd.DataFrame,
    class_names: Sequence[str],
    top_n: int = 5,
) -> Figure:
    """Per video: ground-truth segments (top row) above its ``top_n`` proposals by
    ``label_score`` (one row each), coloured by class and named by label and label_score.

    Args:
        videos: the videos to draw, one panel each.
        proposals: rows of these videos: ``video_id`` (the annotation id), ``t_start``,
            ``t_end``, ``label``, ``label_score``.
        class_names: colour order of the classes.
    """
    color_of = class_colors(class_names)
    fig = new_figure((10, 0.5 + (top_n + 1) * 0.32 * len(videos) + 0.4 * len(videos)))
    by_video = dict(tuple(proposals.groupby("video_id", sort=False)))
    for v, video in enumerate(videos):
        ax = fig.add_subplot(len(videos), 1, v + 1)
        rows = [("ground truth", s, label, None) for s, label in
                zip(video.segments_N2, video.labels, strict=True)]  # fmt: skip
        top = by_video.get(video.video_id, proposals.iloc[:0]).nlargest(top_n, "label_score")
        for rank, row in enumerate(top.itertuples(index=False)):
            rows.append((f"#{rank + 1}", (row.t_start, row.t_end), row.label, row.label_score))
        labels_y = ["ground truth", *[f"#{r + 1}" for r in range(len(top))]]
        for name, (start, end), label, score in rows:
            y = labels_y.index(name)
            ax.barh(y, end - start, left=start, height=0.7, color=color_of.get(label, "grey"))
            text = label if score is None else f"{label} {score:.2f}"
            ax.text(start, y, " " + text, va="center", fontsize=6)
        ax.set_yticks(np.arange(len(labels_y)), labels_y, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlim(0, video.duration)
        ax.set_title(video.video_id, fontsize=8, loc="left")
        ax.grid(True, axis="x", linestyle=":", linewidth=0.5)
    if videos:
        fig.axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG. Each figure here has run ``tight_layout``, which leaves a
    placeholder layout engine behind, and with any engine set ``savefig`` draws the whole
    figure once more before drawing it for the file (matplotlib 3.11). Cleared, the
    200-class confusion matrix took 2.7 s instead of 4.3 s (built and saved, on 2 cores)."""
    fig.set_layout_engine(None)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_png(fig: Figure, uri: str) -> None:
    """Writes a figure as a PNG to ``uri``."""
    storage.write_bytes(uri, png_bytes(fig))


def ar_an_png(result: ARANResult, title: str | None = None) -> bytes:
    """The AR-AN curve as PNG bytes."""
    return png_bytes(ar_an_figure(result, title))


def write_ar_an_png(result: ARANResult, uri: str, title: str | None = None) -> None:
    """Writes the AR-AN curve PNG to ``uri``."""
    storage.write_bytes(uri, ar_an_png(result, title))
