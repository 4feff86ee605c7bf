"""Figures and tables for runs: loss curves, PCKh vs threshold, skeleton overlays, PCKh text.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas, created without pyplot, so
nothing is registered in global state and nothing needs closing (`mlflow.log_figure` takes them
directly; `figure_png` / `save_figure` give bytes or files). `draw_skeleton` draws into a copy
of a uint8 image with OpenCV (used for prediction overlays).

Keypoints are (J, 2) [x, y] in the pixel frame of the image they are drawn on (0-based, pixel
centres at integers); joints follow `dataprep.joints` (MPII order, `SKELETON` bones).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dataprep.joints import JOINT_NAMES, SKELETON
from dataprep.pckh import TABLE_KEYS

# Colours by body side, RGB: right limbs red, left limbs blue, centre line yellow.
RIGHT, LEFT, CENTRE = (230, 60, 50), (40, 120, 230), (240, 200, 30)


def _side(joint: int) -> tuple[int, int, int]:
    name = JOINT_NAMES[joint]
    return RIGHT if name.startswith("r_") else LEFT if name.startswith("l_") else CENTRE


def bone_colour(parent: int, child: int) -> tuple[int, int, int]:
    """RGB colour of a bone: its limb side (a limb-to-trunk bone takes the limb's side)."""
    sides = {_side(parent), _side(child)}
    return next((s for s in (RIGHT, LEFT) if s in sides), CENTRE)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Writes the figure (format from the suffix, e.g. .png/.svg/.pdf); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def loss_curves_figure(
    per_stack: Mapping[str, np.ndarray],
    x: Mapping[str, np.ndarray] | None = None,
    xlabel: str = "epoch",
) -> Figure:
    """Loss of every stack over training.

    Args:
        per_stack: split name (e.g. "train", "val") -> (N, S) losses, column s = stack s.
        x: split name -> (N,) positions (epochs/steps); default 1..N.
    Returns:
        one-axis Figure, log y; colour = stack, line style = split.
    """
    fig = _new_figure(7, 4)
    ax = fig.add_subplot()
    styles = ("-", "--", ":", "-.")
    for i, (split, losses) in enumerate(per_stack.items()):
        losses = np.asarray(losses, dtype=np.float64)
        if losses.ndim == 1:
            losses = losses[:, None]
        xs = np.asarray(x[split]) if x and split in x else np.arange(1, len(losses) + 1)
        if len(xs) != len(losses):
            raise ValueError(f"{split}: {len(xs)} x positions for {len(losses)} loss rows")
        for s in range(losses.shape[1]):
            ax.plot(xs, losses[:, s], styles[i % len(styles)], color=f"C{s}", marker=".",
                    label=f"{split} stack {s + 1}")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("heatmap MSE")
    ax.set_title("Loss per stack")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return fig


def pckh_curve_figure(curve: Mapping[str, np.ndarray], keys: Sequence[str] = TABLE_KEYS) -> Figure:
    """PCKh (%) against the threshold (head sizes), one line per table column.

    Args:
        curve: `dataprep.pckh.pckh_curve` output (`threshold` and one array per key).
    """
    fig = _new_figure(7, 4.5)
    ax = fig.add_subplot()
    for i, key in enumerate(keys):
        width = 2.5 if key == "Total" else 1.2
        ax.plot(curve["threshold"], curve[key], color="k" if key == "Total" else f"C{i}",
                linewidth=width, label=key)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("threshold (x head size)")
    ax.set_ylabel("PCKh (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(float(np.min(curve["threshold"])), float(np.max(curve["threshold"])))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("PCKh vs threshold (official MPII)")
    return fig


def _bones(points: np.ndarray, usable: np.ndarray):
    for parent, child in SKELETON:
        if usable[parent] and usable[child]:
            yield parent, child, points[[parent, child]]


def skeleton_grid_figure(
    images: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
) -> Figure:
    """A grid of images with predicted (coloured by side) and true (white, dashed) skeletons.

    Args:
        images: (B, H, W, 3) uint8 RGB.
        pred: (B, J, 2) px of those images. true: (B, J, 2) or None; NaN joints are skipped.
        labelled: (B, J) bool, which true joints exist (default: finite ones).
        titles: B strings (e.g. person ids), optional.
    """
    images = np.asarray(images)
    pred = np.asarray(pred, dtype=np.float64)
    count = len(images)
    if pred.shape[:1] != (count,) or (true is not None and len(true) != count):
        raise ValueError(f"{count} images but {len(pred)} predictions"
                         + ("" if true is None else f" and {len(true)} ground truths"))
    ncols = max(1, min(ncols, count))
    nrows = max(1, -(-count // ncols))
    fig = _new_figure(2.6 * ncols, 2.6 * nrows)
    for b in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, b + 1)
        ax.set_axis_off()
        if b >= count:
            continue
        ax.imshow(images[b])
        if true is not None:
            gt = np.asarray(true[b], dtype=np.float64)
            usable = np.isfinite(gt).all(1) if labelled is None else np.asarray(labelled[b], bool)
            for _, _, seg in _bones(gt, usable & np.isfinite(gt).all(1)):
                ax.plot(seg[:, 0], seg[:, 1], "--", color="white", linewidth=1)
        usable = np.isfinite(pred[b]).all(1)
        for parent, child, seg in _bones(pred[b], usable):
            ax.plot(seg[:, 0], seg[:, 1], color=np.array(bone_colour(parent, child)) / 255, linewidth=1.5)
        ax.scatter(pred[b, usable, 0], pred[b, usable, 1], s=6, color="white", zorder=3)
        height, width = images[b].shape[:2]
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        if titles is not None:
            ax.set_title(str(titles[b]), fontsize=7)
    return fig


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.0,
) -> np.ndarray:
    """A copy of `image` with the skeleton drawn (anti-aliased, sub-pixel positions).

    Args:
        image: (H, W, 3) uint8, RGB (the colours assume RGB; for BGR they swap sides).
        keypoints: (J, 2) image px. confidence: (J,) or None; joints below `min_confidence`
            (and non-finite ones) are not drawn, nor their bones.
    Returns:
        (H, W, 3) uint8.
    """
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    points = np.asarray(keypoints, dtype=np.float64)
    usable = np.isfinite(points).all(1)
    if confidence is not None:
        usable &= np.asarray(confidence) >= min_confidence
    size = max(out.shape[:2])
    thickness = max(2, round(size / 150))
    shift = 4  # cv2 fixed-point: coordinates in 1/16 px
    fixed = np.round(np.where(usable[:, None], points, 0) * (1 << shift)).astype(np.int64)
    for parent, child, _ in _bones(points, usable):
        cv2.line(out, tuple(map(int, fixed[parent])), tuple(map(int, fixed[child])),
                 bone_colour(parent, child), thickness, cv2.LINE_AA, shift)
    for j in np.flatnonzero(usable):
        centre = tuple(map(int, fixed[j]))
        cv2.circle(out, centre, (thickness + 2) << shift, (255, 255, 255), -1, cv2.LINE_AA, shift)
        cv2.circle(out, centre, (thickness + 1) << shift, _side(j), -1, cv2.LINE_AA, shift)
    return out


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.1f}"


def pckh_markdown(table: Mapping) -> str:
    """The PCKh table (`dataprep.pckh.pckh_table`) as Markdown: the official row, then per joint."""
    lines = [
        f"PCKh@{table.get('threshold', 0.5):g}, official MPII (Total = 14 scored joints pooled)",
        "",
        "| " + " | ".join(TABLE_KEYS) + " |",
        "|" + "---:|" * len(TABLE_KEYS),
        "| " + " | ".join(_fmt(table[k]) for k in TABLE_KEYS) + " |",
    ]
    if "per_joint" in table:
        lines += ["", "| joint | PCKh |", "|---|---:|"]
        for name, value in zip(JOINT_NAMES, table["per_joint"]):
            note = " (not scored)" if name in ("pelvis", "thorax") else ""
            lines.append(f"| {name}{note} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def pckh_csv(table: Mapping) -> str:
    """The PCKh table as CSV: `name,pckh` rows for the columns, then `joint:<name>` per joint."""
    rows = ["name,pckh"] + [f"{k},{table[k]:.4f}" for k in TABLE_KEYS]
    for name, value in zip(JOINT_NAMES, table.get("per_joint", [])):
        rows.append(f"joint:{name},{'' if value is None or np.isnan(value) else f'{value:.4f}'}")
    return "\n".join(rows) + "\n"
