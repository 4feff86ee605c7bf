"""Training progress text and ETA (pure), and the plain-line display driven by a fetch function."""

from __future__ import annotations

import time

import pytest

from pipelines.runtime.progress_lines import eta_s, format_duration
from pipelines.training.progress import ProgressDisplay, Update, format_update


def test_eta_is_the_images_left_over_the_rate():
    assert eta_s(1000, 31680, 47.2) == pytest.approx(30680 / 47.2)
    assert eta_s(40000, 31680, 47.2) == 0.0  # past the total (a remainder batch): nothing left
    assert eta_s(0, 31680, 0.0) is None  # no rate yet
    assert eta_s(10, 0, 5.0) is None  # total unknown


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (95, "1m35s"), (3600, "1h00m"),
                                           (3725, "1h02m"), (None, "?"), (float("inf"), "?")])
def test_durations_read_like_a_clock(seconds, text):
    assert format_duration(seconds) == text


def test_a_training_line_has_epoch_step_rate_losses_pckh_and_eta():
    update = Update(phase="train", epoch=2, epochs=9, step=1320, images=10560, images_total=31680,
                    images_per_s=48.0, loss_per_stack=(0.00441, 0.00392), val_total=73.14,
                    note="fp32-channels_last-compiled")
    # 21,120 images left at 48/s = 440 s = 7m20s
    assert format_update(update, 250.0) == (
        "train epoch 3/9 step 1320 | 10,560/31,680 images (33 %) | 48.0 img/s | loss 0.0044/0.0039 | "
        "val PCKh 73.1 % | 4m10s elapsed, ETA 7m20s | fp32-channels_last-compiled")


def test_a_starting_line_has_no_rate_yet():
    assert format_update(Update(phase="choosing the speed path (measuring)", epochs=9), 3.0) == (
        "choosing the speed path (measuring) epoch 1/9 step 0 | 3s elapsed, ETA ?")


def test_plain_display_writes_each_new_phase_and_then_every_period():
    updates = [Update(), Update(phase="train", step=1, posted_at=1.0),
               Update(phase="train", step=2, posted_at=2.0), Update(phase="validating", step=2, posted_at=3.0)]
    lines: list[str] = []
    with ProgressDisplay(lambda: updates.pop(0) if len(updates) > 1 else updates[0], every_s=3600,
                         poll_s=0.01, tty=False, write=lines.append):
        deadline = time.time() + 5
        while len(updates) > 1 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    # the unposted initial state is not shown; step 2 is the same phase within the period
    assert [line.split(" |")[0] for line in lines] == ["train epoch 1/1 step 1", "validating epoch 1/1 step 2"]


def test_where_to_see_the_mlflow_run():
    from pipelines.tracking.uris import how_to_open

    assert how_to_open("sqlite:////tmp/w/mlflow.db", "1", "abc") == (
        "to see it: `shg tracking-server --workdir /tmp/w`, then open "
        "http://127.0.0.1:5000/#/experiments/1/runs/abc")
    assert how_to_open("http://127.0.0.1:5001/", "2", "r") == "open http://127.0.0.1:5001/#/experiments/2/runs/r"


def test_progress_lines_at_most_every_period_and_at_finish():
    from pipelines.runtime.progress_lines import ProgressLines, progress_line

    assert progress_line("evaluate val", 1200, 2958, "people", 40.0) == \
        "evaluate val: 1,200/2,958 people (41 %), 30.0 people/s, 40s elapsed, ETA 59s"
    assert progress_line("x", 5, 0, "rows", 0.0) == "x: 5 rows, 0.0 rows/s, 0s elapsed, ETA ?"
    now = [0.0]
    lines: list[str] = []
    progress = ProgressLines("evaluate val", 100, "people", lines.append, every_s=10.0, clock=lambda: now[0])
    for t, n in ((4.0, 20), (9.9, 20), (10.0, 20), (15.0, 20), (20.5, 10)):
        now[0] = t
        progress.advance(n)
    assert lines == ["evaluate val: 60/100 people (60 %), 6.0 people/s, 10s elapsed, ETA 7s",
                     "evaluate val: 90/100 people (90 %), 4.4 people/s, 20s elapsed, ETA 2s"]
    now[0] = 22.0
    progress.finish()
    assert lines[-1] == "evaluate val: 90/100 people (90 %), 4.1 people/s, 22s elapsed, ETA 2s"
