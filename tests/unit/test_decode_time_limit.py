"""A decoder that takes too long on one image quarantines that image (`decode_timeout`) and the
task goes on: `load_image` with a per-image time limit, on real image files."""

from __future__ import annotations

import time

import cv2
import numpy as np

from dataprep import quarantine
from dataprep.prepare_batch import load_image


def _write(path, pixels, ext):
    path.write_bytes(cv2.imencode(ext, pixels)[1].tobytes())


def test_an_image_slower_to_decode_than_the_limit_is_quarantined_and_the_next_still_decodes(tmp_path):
    rng = np.random.default_rng(0)
    # a genuine 25 MP PNG of noise: decoding it takes far longer than 1 ms on any CPU
    _write(tmp_path / "slow.png", rng.integers(0, 255, (5000, 5000, 3), dtype=np.uint8), ".png")
    _write(tmp_path / "small.jpg", rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), ".jpg")
    root = tmp_path.resolve()
    started = time.monotonic()
    slow = load_image(root, "slow.png", max_pixels=40_000_000, max_bytes=2**30, max_decode_s=0.001)
    assert time.monotonic() - started < 1.0  # it did not wait for the decoder
    assert isinstance(slow, quarantine.Rejection) and slow.reason == quarantine.DECODE_TIMEOUT
    assert "slow.png" in slow.detail and "0.001 s" in slow.detail and "--max-decode-s" in slow.detail
    small = load_image(root, "small.jpg", max_pixels=40_000_000, max_bytes=2**30, max_decode_s=10.0)
    assert isinstance(small, np.ndarray) and small.shape == (120, 160, 3)
    whole = load_image(root, "slow.png", max_pixels=40_000_000, max_bytes=2**30, max_decode_s=120.0)
    assert isinstance(whole, np.ndarray) and whole.shape == (5000, 5000, 3)  # with time, it decodes
