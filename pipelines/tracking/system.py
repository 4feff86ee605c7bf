"""What a training run ran on: workers, devices and versions as tags, the chosen speed path,
and MLflow's system metrics (CPU, memory, disk, network, GPU) while it trains."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

from pipelines.tracking.provenance import provenance  # one definition of a repeatable run
from pipelines.tracking.tracker import Tracker

# Imported where used: mlflow (about a second to load: only a run that samples system metrics needs
# it)


def log_speed_choice(tracker: Tracker, choice: Any, step: int = 0) -> None:
    """Records a training speed choice (`pipelines.training.precision.SpeedChoice`, or anything
    with `tags()` and `metrics()`): the chosen path as `shg.speed.*` tags (tags, not params,
    because a resumed run measures again and may choose differently), the measured images/s of
    every candidate as `speed/*` metrics at `step`."""
    tracker.set_tags(choice.tags())
    tracker.log_metrics(choice.metrics(), step)


def system_tags(*, workers: int, use_gpu: bool) -> dict[str, str]:
    """Workers, devices, library versions and the git revision, as run tags."""
    import torch  # heavy: only the driver of a training run asks

    tags = provenance()
    tags.update({
        "train.workers": str(workers),
        "train.device": "cuda" if use_gpu else "cpu",
        "train.gpu_name": torch.cuda.get_device_name(0) if use_gpu and torch.cuda.is_available() else "",
        "train.cpu_count": str(os.cpu_count()),
        "train.platform": platform.platform(),
    })
    return tags


@contextlib.contextmanager
def system_metrics(tracking_uri: str, run_id: str, *, resumed: bool = False, sampling_interval_s: float = 10.0,
                   log=print) -> Iterator[None]:
    """MLflow's system metrics (`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`,
    disk, network and, where there is one, GPU) logged to run `run_id` every `sampling_interval_s`
    while the block runs, sampled on this node. A resumed run continues its steps. Without psutil
    (MLflow's sampler needs it) the block runs unmonitored and says so."""
    try:
        import psutil  # noqa: F401  (MLflow's CPU and memory monitors)
    except ImportError:
        log("system metrics off: install psutil (pip install psutil) to log CPU/memory use")
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=sampling_interval_s, resume_logging=resumed,
                                   tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
