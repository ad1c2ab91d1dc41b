"""The AR-AN curve as a PNG, written through :mod:`core.storage` (so ``s3://`` works).

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global
backend switch, safe in Ray workers and tests.
"""

from __future__ import annotations

import io

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core import storage
from core.eval.proposals import ARANResult


def ar_an_figure(result: ARANResult, title: str | None = None) -> Figure:
    """Recall at each tIoU threshold and their average against the average number of
    proposals per video, as MMAction2's BMN demo and ActivityNet's devkit plot it."""
    fig = Figure(figsize=(7, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x_K = result.proposals_per_video_K
    colors = colormaps["viridis"]
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


def ar_an_png(result: ARANResult, title: str | None = None) -> bytes:
    """The AR-AN curve as PNG bytes."""
    buffer = io.BytesIO()
    ar_an_figure(result, title).savefig(buffer, format="png")
    return buffer.getvalue()


def write_ar_an_png(result: ARANResult, uri: str, title: str | None = None) -> None:
    """Writes the AR-AN curve PNG to ``uri``."""
    storage.write_bytes(uri, ar_an_png(result, title))
