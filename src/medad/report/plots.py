"""Figures of the report, each a function from plain arrays to PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_pr_figure(title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """ROC and precision-recall curves, one line per method: curves[label] = (scores, labels)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for label, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        prec, rec, _ = precision_recall_curve(labels, scores)
        ax1.plot(fpr, tpr, label=label, lw=1.5)
        ax2.plot(rec, prec, label=label, lw=1.5)
    ax1.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: ROC")
    ax2.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall")
    for ax in (ax1, ax2):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="lower left")
    return _png(fig)


def histogram_figure(title: str, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Score histograms normal vs abnormal, one panel per method."""
    n = len(scores)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (label, (s, y)) in zip(axes.flat, scores.items(), strict=False):
        bins = np.histogram_bin_edges(s, bins=30)
        ax.hist(s[y == 0], bins=bins, alpha=0.6, label="normal", color="tab:blue", density=True)
        ax.hist(s[y == 1], bins=bins, alpha=0.6, label="abnormal", color="tab:red", density=True)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}: anomaly scores", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def gallery_figure(
    title: str,
    images: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray | None,
    captions: Sequence[str],
) -> bytes:
    """Each column: the image (with the mask outline) above its anomaly map."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.1), squeeze=False)
    vmax = float(np.percentile(maps, 99.5)) if maps.size else 1.0
    for i in range(n):
        img = images[i]
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[1, i].imshow(maps[i], cmap="inferno", vmin=0, vmax=vmax)
        if masks is not None and masks[i].any():
            for ax in axes[:, i]:
                ax.contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.8)
        axes[0, i].set_title(captions[i], fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def study_figure(
    title: str, param: str, series: dict[str, list[tuple[float, float, float]]], metric: str
) -> bytes:
    """A metric against a varied config field: series[dataset] = [(x, mean, std), ...]."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs_all = [x for pts in series.values() for x, _, _ in pts]
    for dataset, pts in series.items():
        pts = sorted(pts)
        x = np.array([p[0] for p in pts])
        ax.errorbar(
            x,
            [100 * p[1] for p in pts],
            yerr=[100 * p[2] for p in pts],
            marker="o",
            capsize=3,
            label=dataset,
        )
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 8:
        ax.set_xscale("log", base=2)
    ax.set(xlabel=param, ylabel=f"{metric} (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def bar_figure(title: str, values: dict[str, tuple[float, float]], metric: str) -> bytes:
    """A metric per category (e.g. weights: imagenet vs random), mean ± std."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = list(values)
    ax.bar(
        names,
        [100 * values[k][0] for k in names],
        yerr=[100 * values[k][1] for k in names],
        capsize=3,
        color="tab:blue",
        alpha=0.8,
    )
    ax.set(ylabel=f"{metric} (%)", title=title)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
