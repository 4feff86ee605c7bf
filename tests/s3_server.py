"""A real S3 server for the tests: moto in server mode on 127.0.0.1, started and stopped here.

`s3_server()` starts it on a free port, points the standard AWS variables of this process at
it (`AWS_ENDPOINT_URL`, dummy keys, a region), creates a bucket, yields the bucket name, and
on exit stops the server and restores the variables. Child processes started inside the block
(Ray, the CLI) inherit the variables, as a user's shell would give them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN")


@contextmanager
def s3_server() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {name: os.environ.pop(name, None) for name in AWS_VARIABLES}
    try:
        host, port = server.get_host_and_port()
        os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                          AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        bucket = f"shg-test-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        yield bucket
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3_client():
    import boto3

    return boto3.client("s3")
