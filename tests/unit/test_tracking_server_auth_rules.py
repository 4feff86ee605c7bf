"""`shg tracking-server` authentication, the pure parts: command line, exposure rule, secret files."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from pipelines.tracking.server import TrackingServerConfig, UnsafeExposure, check_exposure, server_command, server_env
from pipelines.tracking.server_auth import AuthFiles, AuthSetupError, auth_ini_text, prepare_auth


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_runs_mlflows_basic_auth_app_by_default_and_not_with_no_auth(tmp_path):
    cmd = server_command(TrackingServerConfig(workdir=str(tmp_path)))
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert "--app-name" not in server_command(TrackingServerConfig(workdir=str(tmp_path), auth=False))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "mlflow.example.org"])
def test_no_auth_beyond_loopback_is_refused(host):
    with pytest.raises(UnsafeExposure, match=f"--host {host} with --no-auth.*MLFLOW_TRACKING_USERNAME"):
        check_exposure(TrackingServerConfig(host=host, auth=False))
    check_exposure(TrackingServerConfig(host=host, auth=True))  # with users logging in: allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_no_auth_on_loopback_is_allowed(host):
    check_exposure(TrackingServerConfig(host=host, auth=False))


def test_the_command_refuses_an_open_server_on_all_interfaces_before_starting_anything(tmp_path):
    from pipelines.cli.app import build_app

    reply = CliRunner().invoke(build_app(), ["tracking-server", "--host", "0.0.0.0", "--no-auth",
                                             "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert reply.exit_code == 1, reply.output
    assert "--host 0.0.0.0 with --no-auth" in reply.output and "--host 127.0.0.1" in reply.output
    assert not (tmp_path / "w").exists()  # nothing made, nothing started


def test_secrets_are_generated_once_into_0600_files_in_a_0700_folder(tmp_path):
    files = AuthFiles(tmp_path / "auth")
    first = prepare_auth(files, environ={})
    assert _mode(files.folder) == 0o700
    for path in (files.admin_password, files.gate_password, files.secret_key):
        assert _mode(path) == 0o600, path
    assert len({first.admin_password, first.gate_password, first.secret_key}) == 3
    assert len(first.admin_password) >= 32
    assert prepare_auth(files, environ={}) == first  # read back, not regenerated
    assert "***" in repr(first) and first.admin_password not in repr(first)


def test_secrets_from_the_environment_win_and_write_no_file(tmp_path):
    files = AuthFiles(tmp_path / "auth")
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": "admin-from-env", "SHG_TRACKING_GATE_PASSWORD": "gate-from-env",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "key-from-env"}  # fmt: skip
    got = prepare_auth(files, environ=env)
    assert (got.admin_password, got.gate_password, got.secret_key) == ("admin-from-env", "gate-from-env", "key-from-env")
    assert not files.admin_password.exists() and not files.gate_password.exists()


def test_a_secret_file_readable_by_others_is_refused(tmp_path):
    files = AuthFiles(tmp_path / "auth")
    prepare_auth(files, environ={})
    files.gate_password.chmod(0o644)
    with pytest.raises(AuthSetupError, match=r"gate.password is readable by others \(mode 644\)"):
        prepare_auth(files, environ={})


def test_the_ini_keeps_the_user_store_in_the_state_folder_reads_by_default_and_holds_no_password(tmp_path):
    files = AuthFiles(tmp_path / "auth")
    text = auth_ini_text(files)
    assert f"database_uri = sqlite:///{tmp_path / 'auth' / 'basic_auth.db'}\n" in text
    assert "default_permission = READ\n" in text and "admin_password" not in text


def test_the_server_gets_its_secrets_by_environment_never_argv(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    cfg = TrackingServerConfig(workdir=str(tmp_path))
    env = server_env(cfg)
    files = cfg.auth_files
    assert files.folder == (tmp_path / "tracking-auth").resolve()
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(files.ini)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == files.admin_password.read_text().strip()
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == files.secret_key.read_text().strip()
    argv = " ".join(server_command(cfg))
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] not in argv and env["MLFLOW_FLASK_SERVER_SECRET_KEY"] not in argv
    assert "MLFLOW_AUTH_CONFIG_PATH" not in server_env(TrackingServerConfig(workdir=str(tmp_path), auth=False))
