"""Shared fixtures: a moto S3 server on loopback (the s3fs project's convention) and markers."""

from __future__ import annotations

import os
import socket

import pytest

import core  # noqa: F401  (upstream shims before any test imports mmaction)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session; yields its endpoint URL.

    Sets fake AWS credentials and ``AWS_ENDPOINT_URL_S3`` so that s3fs, pyarrow and
    subprocesses (jobs, Ray workers) all reach it.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=endpoint,
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_S3_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
)


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the moto server; yields ``s3://<bucket>``."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    yield f"s3://{name}"


def pytest_collection_modifyitems(config, items):
    """gpu tests skip without CUDA; tests get their marker from their folder."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        path = str(item.fspath)
        for folder in ("unit", "integration", "gpu"):
            if f"{os.sep}tests{os.sep}{folder}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, folder))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
