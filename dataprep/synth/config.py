"""`SynthConfig`: everything that decides the synthetic dataset (same config + seed = same bytes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SynthConfig:
    """The synthetic MPII-format dataset of `shg synth`.

    Args:
        people: annotated people in all (each is one MPII-style entry).
        seed: root of every random choice (`numpy.random.SeedSequence(seed)`).
        val_fraction: share of people (whole images) marked `isValidation`.
        width_range, height_range: image size in px, inclusive, drawn per image.
        person_height_range: standing height in px (MPII `scale_provided` = height / 200).
        multi_person_prob: chance that an image holds 2..`max_people_per_image` people.
        max_people_per_image: upper bound on people per image (all of them are annotated).
        rotation_std_deg: spread of the in-plane body rotation (clipped to +-2.5 std).
        back_view_prob: chance that a person faces away from the camera.
        yaw_std_deg: spread of the body's turn about the vertical around front/back view.
        truncation_prob: chance that a person is pushed partly out of the image.
        occluder_prob: chance that an image gets 1-2 foreground objects over its people.
        max_clutter: background shapes per image are drawn from 3..max_clutter.
        noise_std: pixel noise sigma is drawn from 0..noise_std (0-255 scale).
        jpeg_quality: quality of the written JPEGs.
        workers: processes that render images (1 = in this process).
    """

    people: int = 4000
    seed: int = 0
    val_fraction: float = 0.12
    width_range: tuple[int, int] = (320, 480)
    height_range: tuple[int, int] = (320, 420)
    person_height_range: tuple[float, float] = (150.0, 300.0)
    multi_person_prob: float = 0.3
    max_people_per_image: int = 3
    rotation_std_deg: float = 15.0
    back_view_prob: float = 0.35
    yaw_std_deg: float = 35.0
    truncation_prob: float = 0.12
    occluder_prob: float = 0.15
    max_clutter: int = 12
    noise_std: float = 6.0
    jpeg_quality: int = 90
    workers: int = 2

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"SynthConfig: {message}")

        need(self.people >= 1, f"people must be >= 1, got {self.people}")
        need(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("width_range", "height_range", "person_height_range"):
            lo, hi = getattr(self, name)
            need(0 < lo <= hi, f"{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")
        need(self.person_height_range[1] <= 1.5 * self.height_range[1],
             f"person_height_range {self.person_height_range} is too tall for height_range "
             f"{self.height_range}; people would be cut off nearly everywhere")
        need(self.max_people_per_image >= 1, "max_people_per_image must be >= 1")
        for name in ("multi_person_prob", "back_view_prob", "truncation_prob", "occluder_prob"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be a probability in [0, 1]")
        need(self.rotation_std_deg >= 0 and self.yaw_std_deg >= 0, "angle spreads must be >= 0")
        need(self.max_clutter >= 3, "max_clutter must be >= 3")
        need(self.noise_std >= 0, "noise_std must be >= 0")
        need(1 <= self.jpeg_quality <= 100, "jpeg_quality must be in 1..100")
        need(self.workers >= 1, "workers must be >= 1")

    def to_dict(self) -> dict:
        """Plain JSON-able fields; `workers` is left out because it never changes the output."""
        fields = asdict(self)
        fields.pop("workers")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
