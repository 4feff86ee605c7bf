"""Rank 0's reporting: MLflow metrics through a buffered tracker, validation, run artifacts."""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np
import torch

from dataprep.geometry import apply_affine, invert_affine
from dataprep.joints import FLIP_PERMUTATION
from dataprep.pckh import TABLE_KEYS
from pipelines.config.experiment import ExperimentConfig
from pipelines.figures import plots
from pipelines.tracking.buffered import BufferedTracker
from pipelines.tracking.system import log_speed_choice
from pipelines.training.data_stream import ValidationSet
from pipelines.training.validation import validate
from shg_model import StackedHourglass

log = logging.getLogger("shg.train")


class Rank0Reporter:
    """Rank 0's side effects: MLflow metrics, validation on the held-in-memory val split, and
    the end-of-run artifacts (loss plot, PCKh curve, skeleton grid, per-joint table).

    After a restart, steps and epochs whose metrics the store already holds are not logged
    again (the first values stay): a step re-run after a mid-epoch checkpoint shows once.
    """

    def __init__(self, cfg: ExperimentConfig, tracker: BufferedTracker, val: ValidationSet, *,
                 baseline: dict[str, float] | None) -> None:
        """Args:
            cfg: the experiment (the model to rebuild for validation, the `train.val_*` settings).
            tracker: the run's MLflow tracker (buffered: an outage never stalls training).
            val: the validation split, held in memory.
            baseline: the mean-pose PCKh table logged beside the model's at the end.
        """
        self.cfg = cfg
        self.tracker = tracker
        self.val = val
        self.baseline = baseline
        self.on_validation = None  # on_validation(people done, of, seconds) for the live display
        self.compiled = False
        self.val_threads = len(os.sched_getaffinity(0))  # this node's CPUs
        self.eager_copy = None  # validation model when training runs compiled (see validate)
        self.last_step, self.epochs_logged = self._already_logged()

    def _already_logged(self) -> tuple[int, set[int]]:
        """(last step with a `loss`, epochs with an `epoch/loss`) in the store; (-1, none) when
        the store cannot be read (then a re-run step may show twice)."""
        try:
            steps = [step for step, _ in self.tracker.metric_history("loss")]
            epochs = {step for step, _ in self.tracker.metric_history("epoch/loss")}
        except Exception as err:
            log.warning("could not read the run's logged metrics (%s): re-run steps may be logged twice", err)
            return -1, set()
        return max(steps, default=-1), epochs

    def set_tags(self, tags) -> None:
        """Run tags (through the buffered tracker)."""
        self.tracker.set_tags(tags)

    def speed(self, choice, step: int) -> None:
        """Records the chosen precision/layout/compile path and the measured rates."""
        self.compiled = choice.path.compiled
        log_speed_choice(self.tracker, choice, step)
        log.info("speed: %s", choice.summary())

    def step(self, step: int, loss: float, per_stack: np.ndarray, lr: float, *,
             images_per_s: float, data_wait_s: float) -> None:
        if step <= self.last_step:
            return  # logged before the restart
        metrics = {"loss": loss, "lr": lr, "throughput/images_per_s": images_per_s,
                   "data_wait_s": data_wait_s}
        metrics.update({f"loss/stack_{s}": float(v) for s, v in enumerate(per_stack)})
        self.tracker.log_metrics(metrics, step)

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's metrics (step = epoch), unless logged before a restart."""
        if epoch not in self.epochs_logged:
            self.tracker.log_metrics(metrics, epoch)
            self.epochs_logged.add(epoch)

    def validate(self, model, epoch: int, epoch_metrics: dict, amp):
        """Validates, adds `pckh/*` and `val/*` to `epoch_metrics`; returns the ValidationResult."""
        start = time.perf_counter()
        if self.compiled:
            # An eager NCHW copy: the compiled blocks would compile again for eval mode and for
            # the validation batch size, costing more than validation itself on a small CPU.
            if self.eager_copy is None:
                device = next(model.parameters()).device
                self.eager_copy = StackedHourglass(dataclasses.replace(self.cfg.model, channels_last=False)).to(device)
            self.eager_copy.load_state_dict(model.state_dict())
            model = self.eager_copy
        threads = torch.get_num_threads()
        torch.set_num_threads(self.val_threads)  # the other ranks wait at the epoch's barrier
        try:
            report = self.on_validation
            result = validate(model, self.val, FLIP_PERMUTATION, flip=self.cfg.train.val_flip,
                              batch_size=self.cfg.train.val_batch_size, autocast_dtype=amp,
                              on_batch=None if report is None else
                              (lambda done, people: report(done, people, time.perf_counter() - start)))
        finally:
            torch.set_num_threads(threads)
        epoch_metrics.update({f"pckh/{k}": result.table[k] for k in TABLE_KEYS})
        epoch_metrics.update({f"val/loss/stack_{s}": float(v) for s, v in enumerate(result.loss_per_stack)})
        epoch_metrics["val/loss"] = float(np.mean(result.loss_per_stack))
        epoch_metrics["val/seconds"] = time.perf_counter() - start
        log.info("epoch %d: train loss %.3g, val PCKh@0.5 Total %.1f %%, %.1f images/s", epoch,
                 epoch_metrics["epoch/loss"], result.table["Total"], epoch_metrics["epoch/images_per_s"])
        return result

    def artifacts(self, result) -> None:
        """End-of-run plots and tables (the epoch metrics of this epoch are already logged)."""
        per_stack, xs = {}, {}
        try:  # the whole run's curves, resumed attempts included, are in the store
            for split, prefix in (("train", "epoch/loss"), ("val", "val/loss")):
                series = [dict(self.tracker.metric_history(f"{prefix}/stack_{s}")) for s in range(self.cfg.model.stacks)]
                epochs = sorted(set.intersection(*(set(h) for h in series)))
                if epochs:
                    per_stack[split] = np.array([[h[e] for h in series] for e in epochs])
                    xs[split] = np.array(epochs) + 1
            self.tracker.log_figure(plots.loss_curves_figure(per_stack, xs), "plots/loss_per_stack.png")
        except Exception as err:  # the store is down: the plot is lost, the run is not
            log.warning("loss plot skipped: the tracking store could not be read (%s)", err)
        self.tracker.log_figure(plots.pckh_curve_figure(result.curve), "plots/pckh_curve.png")
        count = min(self.cfg.train.val_grid_people, len(self.val))
        if count:
            to_input = [invert_affine(a) for a in self.val.input_to_image[:count]]
            pred = np.stack([apply_affine(a, p) for a, p in zip(to_input, result.pred[:count])])
            true = np.stack([apply_affine(a, p) for a, p in zip(to_input, self.val.joints_image[:count])])
            grid = plots.skeleton_grid_figure(self.val.images[:count], pred, true, self.val.labelled[:count],
                                              titles=list(self.val.person_id[:count]))
            self.tracker.log_figure(grid, "plots/val_skeletons.png")
        table = {k: v for k, v in result.table.items()}
        self.tracker.log_text(plots.pckh_markdown(table), "pckh/per_joint.md")
        self.tracker.log_text(plots.pckh_csv(table), "pckh/per_joint.csv")
        self.tracker.log_dict({"model": table, "mean_pose_baseline": self.baseline}, "pckh/tables.json")
