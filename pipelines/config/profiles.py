"""Named override sets for `shg run` (the workflow): `smoke` and `default`.

A profile is a tuple of `KEY=VALUE` strings in the workflow's override language: `synth.*` keys
configure the embedded synthetic dataset (`dataprep.synth.SynthConfig`), everything else is an
`ExperimentConfig` key (`model.*`, `data.*`, `train.*`). The workflow applies the profile first
and the user's own overrides after it, so a user value always wins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """A named recipe: what it is for, and the overrides that make it."""

    name: str
    description: str
    overrides: tuple[str, ...]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tiny synthetic set and tiny model: checks the whole pipeline in ~2 minutes on 2 cores",
        overrides=(
            "synth.people=160",
            "model.stacks=2",
            "model.channels=16",
            "data.input_size=64",
            "train.epochs=2",
            "train.batch_size=4",
            "train.workers=2",
            "train.val_max_people=32",
            "train.val_grid_people=4",
            "train.log_every=5",
        ),
    ),
    "default": Profile(
        name="default",
        description=("the README main job: embedded synthetic set at moderate difficulty, reduced-width "
                     "2-stack hourglass, one CPU worker using every core, on the speed path measured "
                     "for the machine (docs/RECIPES.md)"),
        overrides=(
            # the synthetic people: 4,000 at moderate difficulty (SynthConfig's defaults are the
            # harder, MPII-like setting: more back views, occluders, crowds and truncation)
            "synth.people=4000",
            "synth.yaw_std_deg=20",
            "synth.back_view_prob=0.2",
            "synth.occluder_prob=0.05",
            "synth.multi_person_prob=0.15",
            "synth.truncation_prob=0.05",
            "synth.max_clutter=8",
            "model.stacks=2",
            "model.channels=64",
            "data.input_size=128",
            # 32 px heatmaps: sigma 2 there covers what sigma 4 does at 64 px; the wider target
            # leaves the all-zero plateau far sooner (probe: PCKh 30.8 vs 14.5 % after 8k images)
            "data.sigma=2",
            "data.rotation_deg=20",
            "data.scale_min=0.85",
            "data.scale_max=1.15",
            # the fastest correct path for the machine: measured on a CPU, autocast on a GPU
            # (pipelines/training/precision.py)
            "train.amp=auto",
            "train.layout=auto",
            # 720 steps of 8 (5,760 images, 1.6 epochs): what fits 15 minutes on a 2-core AVX2
            # CPU at ~11 images/s (the whole job, synthesis to registration); docs/RECIPES.md has
            # the frontier (85 % needs ~30 k images: ~50 minutes there)
            "train.epochs=2",
            "train.max_steps=720",
            # 8 images per optimiser step (per image seen, small steps learn far faster; probe:
            # PCKh 75.4 % after 12k images at 8 per step, 64.1 % at 16 per step), in one worker
            # with every core: no gradient all-reduce, one process to warm up
            "train.batch_size=8",
            "train.workers=1",
            "train.cpus_per_worker=1",
            "train.optimizer=adam",
            "train.lr=2e-3",
            # no lr drop: at 7k images the curve is still steep (a drop pays near the plateau)
            "train.val_every=2",
            "train.log_every=40",
        ),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; an unknown name is an error listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}") from None


def profile_overrides(name: str) -> list[str]:
    """`KEY=VALUE` strings of profile `name` (apply the user's overrides after these)."""
    return list(get_profile(name).overrides)
