"""The training speed path `auto` chooses on this machine, and the rates behind the choice.

Runs `pipelines.training.precision.resolve` (the same measurement a training worker makes) on
the main job's profile (`synthetic`: its model, input size and batch), in one process with all
threads, with the main job's images per worker so that compiling is considered. Also times eager fp32 channels_last, which
`auto` never picks (eager channels_last BatchNorm is less accurate on CPU), for comparison.

    flock /tmp/shg-heavy.lock .venv/bin/python -m benchmarks --only speedpath
"""

from __future__ import annotations

import dataclasses

MAIN_JOB_PROFILE = "synthetic"


def measure_speed_path(images_per_worker: int | None = None, profile: str = MAIN_JOB_PROFILE) -> dict[str, float]:
    """`speedpath_<path>_images_per_s` for every measured path, the compile seconds, the
    choice as 0/1 flags (`speedpath_chosen_*`) and the measurement's own cost."""
    import torch

    from pipelines.config.run import resolve_run_config
    from pipelines.training.precision import Path, measure_path, resolve
    from pipelines.training.optim import build_optimizer
    from shg_model import StackedHourglass, heatmap_loss

    cfg = resolve_run_config(profile)
    if images_per_worker is None:  # the main job's training images per worker over its epochs
        train_rows = round(cfg.synth.people * (1.0 - cfg.synth.val_fraction))
        images_per_worker = train_rows // max(1, cfg.train.workers) * cfg.train.epochs
    torch.manual_seed(0)
    choice, _ = resolve(cfg.model, "auto", "auto", "auto", batch_size=cfg.train.batch_size,
                        input_size=cfg.data.input_size, images_per_worker=images_per_worker,
                        make_optimizer=lambda m: build_optimizer(m, cfg.train),
                        log=lambda line: print(f"         {line}", flush=True))
    print(f"         chosen: {choice.summary()}", flush=True)
    figures = {f"speedpath_{t.path.name}_images_per_s": t.images_per_s for t in choice.timings}
    figures.update({f"speedpath_{t.path.name}_first_step_s": t.first_step_s for t in choice.timings
                    if t.path.compiled})
    figures["speedpath_measure_s"] = choice.measure_s
    figures["speedpath_chosen_bf16"] = float(choice.path.amp == "bf16")
    figures["speedpath_chosen_channels_last"] = float(choice.path.layout == "channels_last")
    figures["speedpath_chosen_compiled"] = float(choice.path.compiled)

    # eager fp32 channels_last: not a candidate, timed for the record
    model_cfg = dataclasses.replace(cfg.model, channels_last=True)
    model = StackedHourglass(model_cfg)
    optimizer = build_optimizer(model, cfg.train)
    size, batch = cfg.data.input_size, cfg.train.batch_size
    images = (torch.rand(batch, 3, size, size) - 0.5).contiguous(memory_format=torch.channels_last)
    target, weight = torch.rand(batch, model_cfg.joints, size // 4, size // 4) * 0.1, torch.ones(batch, model_cfg.joints)

    def step() -> None:
        loss, _ = heatmap_loss(model(images), target, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    eager_cl = measure_path(step, Path("off", "channels_last"), batch_size=batch)
    figures[f"speedpath_{eager_cl.path.name}_images_per_s"] = eager_cl.images_per_s
    return figures
