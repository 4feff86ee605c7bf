"""The S3 server of the storage tests, with this process's AWS variables pointed at it.

`s3_server()` starts moto in server mode (`services.s3_server`: its own process on a free port
of 127.0.0.1, one bucket), points the standard AWS variables of this process at it
(`AWS_ENDPOINT_URL`, its keys, a region), yields the bucket name, and on exit stops the server
and restores the variables. Child processes started inside the block (Ray, the CLI) inherit
the variables, as a user's shell would give them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import services

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL")


@contextmanager
def s3_server() -> Iterator[str]:
    with services.s3_server(f"shg-test-{uuid.uuid4().hex[:8]}") as server:
        saved = {name: os.environ.pop(name, None) for name in AWS_VARIABLES}
        os.environ.update(server.env())
        try:
            yield server.bucket
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def s3_client():
    """A boto3 client of the server the AWS variables point at."""
    import boto3

    return boto3.client("s3")
