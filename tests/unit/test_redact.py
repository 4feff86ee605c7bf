"""`redact()`: no password of a URI survives, in the userinfo or in the query string."""

from __future__ import annotations

import pytest

from pipelines.tracking.server import redact


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql+psycopg2://mlflow:s3/cr+t=@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
    # a password holding @ (unescaped, as people paste them): hidden whole, host kept
    ("postgresql://mlflow:p@ss@word@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("mysql://u:a@b@h/db and http://v:c@d@g:1/x", "mysql://u:***@h/db and http://v:***@g:1/x"),
    # libpq / SQLAlchemy query parameters
    ("postgresql://db:5432/mlflow?user=mlflow&password=hunter2", "postgresql://db:5432/mlflow?user=mlflow&password=***"),
    ("postgresql://db/mlflow?password=hunter2&sslmode=require", "postgresql://db/mlflow?password=***&sslmode=require"),
    ("postgresql://db/mlflow?sslmode=require&sslpassword=k3y#frag", "postgresql://db/mlflow?sslmode=require&sslpassword=***#frag"),
    ("http://h/x?PASSWORD=Secret1 y", "http://h/x?PASSWORD=*** y"),
    ("https://h/x?token=abc&pwd=def", "https://h/x?token=***&pwd=***"),
    # both at once, and an @ in the query that is not a password's
    ("postgresql://u:pw@db/m?password=pw2&email=a@b.c", "postgresql://u:***@db/m?password=***&email=a@b.c"),
    # nothing to hide
    ("sqlite:////tmp/mlflow.db http://127.0.0.1:5000 s3://bucket/key", "sqlite:////tmp/mlflow.db http://127.0.0.1:5000 s3://bucket/key"),
    ("http://127.0.0.1:5000/api?name=m&version=2", "http://127.0.0.1:5000/api?name=m&version=2"),
])  # fmt: skip
def test_redact(text, expected):
    assert redact(text) == expected
