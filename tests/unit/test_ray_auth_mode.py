"""Ray's token auth: every RAY_AUTH_MODE but `token` is warned about; `shg submit`'s advice turns it on."""

from __future__ import annotations

import socket

import pytest

from pipelines.runtime.ray_cluster import auth_mode_warning


@pytest.mark.parametrize("value", ["disabled", "DISABLED", "none", "off", "tokn", "", "Token", "k8s"])
def test_every_mode_but_token_is_warned_about(value):
    warning = auth_mode_warning({"RAY_AUTH_MODE": value})
    assert warning is not None and f"RAY_AUTH_MODE={value!r}" in warning and "only 'token'" in warning


@pytest.mark.parametrize("environ", [{}, {"RAY_AUTH_MODE": "token"}, {"OTHER": "disabled"}])
def test_token_or_unset_is_not_warned_about(environ):
    assert auth_mode_warning(environ) is None


def test_the_ray_start_advice_turns_token_auth_on_explicitly():
    from pipelines.orchestration.submit import client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError) as error:
        client(f"http://127.0.0.1:{port}")
    advice = str(error.value)
    assert "ray get-auth-token --generate >/dev/null && RAY_AUTH_MODE=token ray start --head" in advice
