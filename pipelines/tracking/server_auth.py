"""Authentication for `shg tracking-server`: MLflow's basic-auth app, its secrets, the gate account.

With authentication on (the default) the server is `mlflow server --app-name basic-auth`: every
request but /health needs a user and password, kept in MLflow's own user store (a sqlite file).
Three secrets make it work, each taken from the environment when set there, otherwise read from
(or, the first time, generated into) a file of mode 0600 in the state folder:

| secret | environment | file |
|---|---|---|
| the `admin` password (creates users, grants permissions) | MLFLOW_AUTH_ADMIN_PASSWORD | admin.password |
| the gate account's password (`gate`: the only one that may move `champion`) | SHG_TRACKING_GATE_PASSWORD | gate.password |
| Flask's secret key (signs the UI's CSRF tokens) | MLFLOW_FLASK_SERVER_SECRET_KEY | flask.secret |

The permission model is MLflow's: `default_permission = READ`, so a user sees every experiment
and model but writes only to what they created or were granted. After the server answers, the
gate account is created (as admin) and made the owner (MANAGE) of the registered model before
any run registers it, so nobody else can squat the name: setting or deleting an alias needs
EDIT on the registered model, which other users lack (they get 403). Training jobs and the
scheduled retraining log in as the gate (MLFLOW_TRACKING_USERNAME=gate,
MLFLOW_TRACKING_PASSWORD=<the gate password>), since their register step moves `champion`;
people get accounts of their own from the admin.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ADMIN_USER = "admin"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
GATE_PASSWORD_ENV = "SHG_TRACKING_GATE_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"


class AuthSetupError(RuntimeError):
    """The authentication of the tracking server cannot be set up; the message says why and the fix."""


@dataclasses.dataclass(frozen=True)
class AuthFiles:
    """Where the auth state of one server lives: `folder` (mode 0700) and the files in it."""

    folder: Path

    @property
    def ini(self) -> Path:
        return self.folder / "basic_auth.ini"

    @property
    def database(self) -> Path:
        return self.folder / "basic_auth.db"

    @property
    def admin_password(self) -> Path:
        return self.folder / "admin.password"

    @property
    def gate_password(self) -> Path:
        return self.folder / "gate.password"

    @property
    def secret_key(self) -> Path:
        return self.folder / "flask.secret"


@dataclasses.dataclass(frozen=True)
class AuthSecrets:
    """The secrets the server and its set-up need (never printed, never on a command line)."""

    admin_password: str
    gate_password: str
    secret_key: str

    def __repr__(self) -> str:
        return "AuthSecrets(***)"


def auth_ini_text(files: AuthFiles) -> str:
    """MLflow's basic_auth.ini for `files`: the user store in the state folder, READ by default,
    no password in it (the admin password goes by environment)."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{files.database}\n"
        f"admin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def prepare_auth(files: AuthFiles, environ: dict[str, str] | None = None) -> AuthSecrets:
    """Makes the state folder (0700) and its ini, and returns the secrets: each from `environ`
    when set there, else from its 0600 file, generated on first use.

    Raises `AuthSetupError` when a secret file can be read by others (a password that leaked
    into a group-readable file is not one to keep using quietly) or is empty.
    """
    environ = os.environ if environ is None else environ
    files.folder.mkdir(parents=True, exist_ok=True)
    files.folder.chmod(0o700)
    files.ini.write_text(auth_ini_text(files))
    return AuthSecrets(
        admin_password=environ.get(ADMIN_PASSWORD_ENV) or _secret_file(files.admin_password),
        gate_password=environ.get(GATE_PASSWORD_ENV) or _secret_file(files.gate_password),
        secret_key=environ.get(SECRET_KEY_ENV) or _secret_file(files.secret_key),
    )


def _secret_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise AuthSetupError(
                f"{path} is readable by others (mode {mode:o}): make a new secret "
                f"(delete the file, and for a password also change it on the server) and keep it 0600"
            ) from None
        value = path.read_text().strip()
        if not value:
            raise AuthSetupError(f"{path} is empty: delete it and a new secret is generated")
        return value
    value = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def auth_env(files: AuthFiles, auth: AuthSecrets) -> dict[str, str]:
    """The server process's environment additions for basic auth."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(files.ini),
        ADMIN_PASSWORD_ENV: auth.admin_password,
        SECRET_KEY_ENV: auth.secret_key,
    }


def provision_gate(url: str, auth: AuthSecrets, *, gate_user: str, registered_model: str, timeout_s: float = 30.0) -> None:
    """Makes `gate_user` the owner of `registered_model` on the running server at `url`.

    Creates the user (as admin) if missing, else sets its password to `auth.gate_password` (so
    the environment or file is the source of truth); then creates the registered model as the
    gate, which makes it its MANAGE owner, or, when the model already exists (a store that ran
    without authentication before), grants the gate MANAGE on it. Idempotent.
    """
    admin = (ADMIN_USER, auth.admin_password)
    gate = (gate_user, auth.gate_password)
    status, _ = _call(url, "GET", "/api/2.0/mlflow/users/get", admin, {"username": gate_user}, timeout_s)
    if status == 401:
        raise AuthSetupError(
            f"the tracking server at {url} refuses the admin password: its user store was made with "
            f"another one. Set {ADMIN_PASSWORD_ENV} (or the admin.password file) to the store's admin password"
        )
    if status == 200:
        _expect(_call(url, "PATCH", "/api/2.0/mlflow/users/update-password", admin,
                      {"username": gate_user, "password": auth.gate_password}, timeout_s), "set the gate's password")  # fmt: skip
    else:
        _expect(_call(url, "POST", "/api/2.0/mlflow/users/create", admin,
                      {"username": gate_user, "password": auth.gate_password}, timeout_s), "create the gate user")  # fmt: skip
    status, body = _call(url, "POST", "/api/2.0/mlflow/registered-models/create", gate, {"name": registered_model}, timeout_s)
    if status == 200:
        return
    if "RESOURCE_ALREADY_EXISTS" not in body:
        _expect((status, body), f"create the registered model {registered_model!r} as {gate_user!r}")
    grant = {"username": gate_user, "resource_type": "registered_model", "resource_id": registered_model,
             "permission": "MANAGE"}  # fmt: skip
    status, body = _call(url, "POST", "/api/3.0/mlflow/users/permissions/grant", admin, grant, timeout_s)
    if status != 200 and "RESOURCE_ALREADY_EXISTS" not in body:
        _expect((status, body), f"grant {gate_user!r} MANAGE on {registered_model!r}")


def _call(url: str, method: str, path: str, user: tuple[str, str], payload: dict, timeout_s: float) -> tuple[int, str]:
    """(HTTP status, body) of one REST call as `user` (basic auth)."""
    data = None
    target = url.rstrip("/") + path
    if method == "GET":
        target += "?" + urllib.parse.urlencode(payload)
    else:
        data = json.dumps(payload).encode()
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    request = urllib.request.Request(target, data=data, method=method,
                                     headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _expect(reply: tuple[int, str], what: str) -> None:
    status, body = reply
    if status != 200:
        raise AuthSetupError(f"the tracking server would not {what}: HTTP {status} {body[:300]}")
