"""Plots: figures render without pyplot state; skeletons land where the keypoints are."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib._pylab_helpers import Gcf

from dataprep import pckh
from pipelines.figures import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = Gcf.get_num_fig_managers()
    yield
    assert Gcf.get_num_fig_managers() == before  # nothing registered in pyplot's global state


def test_loss_curves_one_line_per_split_and_stack(tmp_path):
    rng = np.random.default_rng(0)
    fig = plots.loss_curves_figure(
        {"train": rng.uniform(1e-3, 1e-2, (10, 4)), "val": rng.uniform(1e-3, 1e-2, (5, 4))},
        x={"val": np.arange(2, 12, 2)},
    )
    ax = fig.axes[0]
    assert len(ax.lines) == 8 and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[4].get_xdata(), [2, 4, 6, 8, 10])
    assert plots.figure_png(fig).startswith(PNG_MAGIC)
    assert plots.save_figure(fig, tmp_path / "a" / "loss.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="val: 3 x positions for 5 loss rows"):
        plots.loss_curves_figure({"val": np.ones((5, 2))}, x={"val": [1, 2, 3]})


def test_pckh_curve_figure():
    gt = np.zeros((2, 16, 2))
    pred = gt + np.linspace(0, 10, 16)[None, :, None]
    curve = pckh.pckh_curve(pred, gt, np.zeros((2, 16), bool), np.array([10.0, 20.0]),
                            np.linspace(0, 1, 21))
    fig = plots.pckh_curve_figure(curve)
    lines = fig.axes[0].get_lines()
    total = next(line for line in lines if line.get_label() == "Total")
    np.testing.assert_array_equal(total.get_ydata(), curve["Total"])
    assert plots.figure_png(fig).startswith(PNG_MAGIC)


def test_skeleton_grid_draws_pred_and_true():
    images = np.zeros((3, 64, 48, 3), np.uint8)
    pred = np.random.default_rng(1).uniform(5, 40, (3, 16, 2))
    true = pred + 2
    true[0, 9] = np.nan  # missing head top: its bone is skipped
    fig = plots.skeleton_grid_figure(images, pred, true, titles=["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4  # 2 x 2 grid, the last one empty
    first = fig.axes[0]
    dashed = [line for line in first.lines if line.get_linestyle() == "--"]
    assert len(dashed) == len(plots.SKELETON) - 1
    assert len(first.lines) - len(dashed) == len(plots.SKELETON)
    assert first.get_title() == "a"
    assert plots.figure_png(fig).startswith(PNG_MAGIC)


def test_draw_skeleton_colours_the_bone_between_its_joints():
    image = np.zeros((100, 100, 3), np.uint8)
    keypoints = np.full((16, 2), np.nan)
    keypoints[0] = (20.0, 80.0)  # r_ankle
    keypoints[1] = (20.0, 20.0)  # r_knee: a vertical right-leg bone along x = 20
    out = plots.draw_skeleton(image, keypoints)
    assert image.max() == 0  # the input is not modified
    np.testing.assert_array_equal(out[50, 20], plots.RIGHT)
    assert out[50, 40].max() == 0  # nothing away from the bone
    np.testing.assert_array_equal(out[80, 20], plots.RIGHT)  # joint dot, right side colour
    low = plots.draw_skeleton(image, keypoints, confidence=np.zeros(16), min_confidence=0.1)
    assert low.max() == 0


def test_bone_colours_by_side():
    assert plots.bone_colour(12, 7) == plots.RIGHT  # r_shoulder-thorax
    assert plots.bone_colour(13, 7) == plots.LEFT
    assert plots.bone_colour(8, 9) == plots.CENTRE


def test_pckh_markdown_and_csv():
    table = {k: float(i * 10) for i, k in enumerate(pckh.TABLE_KEYS)}
    table["per_joint"] = [50.0] * 6 + [float("nan")] * 2 + [75.0] * 8
    table["threshold"] = 0.5
    md = plots.pckh_markdown(table).splitlines()
    assert md[2] == "| Head | Shoulder | Elbow | Wrist | Hip | Knee | Ankle | UBody | Total |"
    assert md[4] == "| 0.0 | 10.0 | 20.0 | 30.0 | 40.0 | 50.0 | 60.0 | 70.0 | 80.0 |"
    assert "| pelvis (not scored) |  |" in md
    csv = plots.pckh_csv(table).splitlines()
    assert csv[0] == "name,pckh" and csv[9] == "Total,80.0000"
    assert csv[10] == "joint:r_ankle,50.0000" and csv[16] == "joint:pelvis,"
