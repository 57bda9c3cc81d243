"""Figures of the report, each a function from plain arrays to PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_pr_figure(
    title: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    areas: dict[str, tuple[float, float]] | None = None,
) -> bytes:
    """ROC and precision-recall curves, one line per method: curves[label] = (scores, labels)
    (image scores and labels, or flattened pixel maps and masks); each legend gives the area
    (AUROC, AP; `areas[label]` when given, e.g. exact values for curves drawn from a sample of
    pixels) and the PR panel the share of positives, the AP of a random ranking."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    prevalence = None
    for label, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        prec, rec, _ = precision_recall_curve(labels, scores)
        if areas is not None and label in areas:
            auroc, ap = areas[label]
        else:
            auroc = roc_auc_score(labels, scores)
            ap = average_precision_score(labels, scores)
        ax1.plot(fpr, tpr, label=f"{label} (AUROC {100 * auroc:.1f})", lw=1.5)
        ax2.plot(rec, prec, label=f"{label} (AP {100 * ap:.1f})", lw=1.5)
        prevalence = float(np.mean(labels))
    ax1.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="chance (50.0)")
    if prevalence is not None:
        ax2.axhline(prevalence, ls=":", c="grey", lw=1, label=f"chance ({100 * prevalence:.1f})")
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: ROC")
    ax2.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall")
    for ax in (ax1, ax2):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="lower right")
    ax2.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def loss_figure(title: str, losses: dict[str, list[tuple[int, float]]]) -> bytes:
    """Training loss per epoch, one line per run: losses[label] = [(epoch, loss), ...]; a log
    scale when the losses span more than a factor 20."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    values = []
    for label, points in losses.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", lw=1.2, label=label)
            values += [p[1] for p in points]
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="training loss (mean over batches)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def cd_diagram(
    title: str,
    mean_ranks: dict[str, float],
    critical_difference: float,
    groups: list[tuple[str, ...]],
) -> bytes:
    """Critical-difference diagram (Demšar 2006, fig. 1): the rank axis (1 = best, left), each
    method at its mean rank, the CD as a bar above the axis, and thick lines joining methods whose
    mean ranks differ by less than the CD (no significant difference)."""
    names = sorted(mean_ranks, key=lambda n: mean_ranks[n])
    k = len(names)
    half = (k + 1) // 2
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.32 * half + 0.18 * len(groups)))
    ax.set_xlim(0.5, k + 0.5)
    top = 1.0
    ax.set_ylim(top - 0.35 * half - 0.15 * len(groups) - 0.25, top + 0.55)
    ax.hlines(top, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, top, top + 0.08, color="black", lw=1)
        ax.text(r, top + 0.12, str(r), ha="center", va="bottom", fontsize=9)
    cd_end = min(1 + critical_difference, k + 0.5)
    ax.hlines(top + 0.42, 1, cd_end, color="tab:red", lw=2)
    ax.text((1 + cd_end) / 2, top + 0.46, f"CD = {critical_difference:.2f}", ha="center",
            va="bottom", fontsize=8, color="tab:red")  # fmt: skip
    for i, name in enumerate(names):
        left = i < half
        row = i if left else k - 1 - i
        y = top - 0.35 * (row + 1) - 0.15 * len(groups)
        x = mean_ranks[name]
        ax.vlines(x, y, top, color="grey", lw=0.8)
        edge = 0.6 if left else k + 0.4
        ax.hlines(y, min(x, edge), max(x, edge), color="grey", lw=0.8)
        ax.text(
            edge + (-0.05 if left else 0.05), y, f"{name} ({x:.2f})",
            ha="right" if left else "left", va="center", fontsize=8,
        )  # fmt: skip
    for j, group in enumerate(groups):
        xs = [mean_ranks[n] for n in group]
        y = top - 0.1 - 0.15 * j
        ax.hlines(y, min(xs) - 0.03, max(xs) + 0.03, color="black", lw=3.5)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
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
    vmin = float(min(0.0, np.min(maps))) if maps.size else 0.0
    vmax = float(np.percentile(maps, 99.5)) if maps.size else 1.0
    shown = None
    for i in range(n):
        img = images[i]
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=255)
        shown = axes[1, i].imshow(maps[i], cmap="inferno", vmin=vmin, vmax=vmax)
        if masks is not None and masks[i].any():
            for ax in axes[:, i]:
                ax.contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.8)
        axes[0, i].set_title(captions[i], fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if shown is not None:  # one scale for every map: the bar says what a colour means
        fig.subplots_adjust(right=0.93)
        box = axes[1, -1].get_position()
        cax = fig.add_axes((0.945, box.y0, 0.012, box.height))
        bar = fig.colorbar(shown, cax=cax)
        bar.set_label("anomaly score\n(clipped at 99.5th pct.)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return _png(fig)


def _percent_axis(ax, metric: str, lowest: float) -> str:
    """Rank metrics from chance (50 %) to 100, others from 0: the axis starts where a reader
    expects, so a 1-point difference does not look large; says so in the label."""
    floor = 50.0 if "AUROC" in metric else 0.0
    floor = min(floor, 10 * np.floor(lowest / 10))
    ax.set_ylim(floor, 100)
    return f"{metric} (%, axis from {floor:g})"


def study_figure(
    title: str, param: str, series: dict[str, list[tuple[float, float, float]]], metric: str
) -> bytes:
    """A metric against a varied config field: series[dataset] = [(x, mean, error), ...], the
    error bar (std over seeds or a bootstrap half-width) already in the metric's units."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs_all = [x for pts in series.values() for x, _, _ in pts]
    lowest = min((100 * (m - e) for pts in series.values() for _, m, e in pts), default=50.0)
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
    ax.set(xlabel=param, ylabel=_percent_axis(ax, metric, lowest), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def bar_figure(title: str, values: dict[str, tuple[float, float]], metric: str) -> bytes:
    """A metric per category (e.g. weights: imagenet vs random), mean ± std."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = list(values)
    lowest = min((100 * (m - e) for m, e in values.values()), default=50.0)
    ax.bar(
        names,
        [100 * values[k][0] for k in names],
        yerr=[100 * values[k][1] for k in names],
        capsize=3,
        color="tab:blue",
        alpha=0.8,
    )
    ax.set(ylabel=_percent_axis(ax, metric, lowest), title=title)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)
