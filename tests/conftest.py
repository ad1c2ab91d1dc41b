"""Shared fixtures: a moto S3 server on loopback (the s3fs project's convention), markers, and
a list of skipped tests for CI.

With ``PYTEST_SKIP_REPORT=FILE`` in the environment, the session writes every skipped test (or
skipped module) to ``FILE``, one ``<node id>\t<reason>`` line each, even when nothing was
skipped; ``.ci/run`` fails when any of them is outside ``tests/gpu/``.
"""

from __future__ import annotations

import collections
import os
import pathlib
import socket
import sys

import pytest

import core  # noqa: F401  (upstream shims before any test imports mmaction)


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Each test starts with the OpenMMLab default scope the previous one found: mmdet's
    ``init_detector`` and ``init_default_scope`` set it for the whole process, and a test that
    builds an MMAction2 model after one left "mmdet" set would look in mmdet's registries. The
    same save and restore as mmengine's ``DefaultScope.overwrite_default_scope``."""
    registry = sys.modules.get("mmengine.registry")
    saved = {} if registry is None else dict(registry.DefaultScope._instance_dict)
    yield
    registry = sys.modules.get("mmengine.registry")  # the test may have imported it
    if registry is not None:
        registry.DefaultScope._instance_dict = collections.OrderedDict(saved)


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


SKIP_REPORT_ENV = "PYTEST_SKIP_REPORT"
_skipped: dict[str, str] = {}  # node id -> reason, in the order the skips happened


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Records a test skipped in setup, call or teardown (an xfail is not a skip)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.setdefault(report.nodeid, _skip_reason(report))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Records a module skipped while collected (``pytest.importorskip`` at its top)."""
    if report.skipped:
        _skipped.setdefault(report.nodeid, _skip_reason(report))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(SKIP_REPORT_ENV)
    if path:
        lines = (f"{nodeid}\t{' '.join(why.split())}\n" for nodeid, why in _skipped.items())
        pathlib.Path(path).write_text("".join(lines))
