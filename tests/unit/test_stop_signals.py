"""`stop_signals_raise`: the first stop signal raises once, later ones cannot cut the clean-up short."""

from __future__ import annotations

import os
import signal

import pytest

from pipelines.tracking.server import StopRequested, stop_signals_raise


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_the_first_signal_raises_and_a_second_during_cleanup_is_ignored(signum):
    before = signal.getsignal(signum)
    cleaned = False
    with pytest.raises(StopRequested, match=signal.Signals(signum).name):
        with stop_signals_raise():
            try:
                os.kill(os.getpid(), signum)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second stop while cleaning up
                cleaned = True
    assert cleaned
    assert signal.getsignal(signum) == before  # handlers put back
