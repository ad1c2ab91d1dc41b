"""Run leases: a running driver's proof of life under its output (``_runs/<run>/lease.json``),
so that another run can tell a dead writer's half-committed batches from a live one's."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from core import storage

log = logging.getLogger(__name__)

RUNS_DIR = "_runs"
LEASE_TIMEOUT_S = 120.0
"""A run whose lease was not renewed for this long is taken as dead (its process may have
been killed or its node lost)."""
LEASE_RENEW_S = 10.0


class RunLease:
    """The driver's proof of life: ``_runs/<run>/lease.json`` renewed every few seconds."""

    def __init__(self, output_uri: str, run_id: str, renew_s: float = LEASE_RENEW_S) -> None:
        self.uri = storage.join(output_uri, RUNS_DIR, run_id, "lease.json")
        self.run_id, self.renew_s = run_id, renew_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="run-lease")

    def __enter__(self) -> RunLease:
        self._write(released=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._write(released=True)

    def _write(self, released: bool) -> None:
        lease = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                 "renewed_at": time.time(), "released": released}  # fmt: skip
        storage.write_json(self.uri, lease)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self._write(released=False)
            except Exception:  # noqa: BLE001  (a missed renewal is retried at the next tick)
                log.warning("could not renew the run lease %s", self.uri, exc_info=True)


def run_is_alive(output_uri: str, run_id: str, timeout_s: float = LEASE_TIMEOUT_S) -> bool:
    """Whether the run's driver may still be writing: its lease is unreleased and fresh, and,
    when it runs on this host, its process exists."""
    uri = storage.join(output_uri, RUNS_DIR, run_id, "lease.json")
    if not storage.exists(uri):
        return False
    lease = storage.read_json(uri)
    if lease.get("released"):
        return False
    if lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid", -1))):
        return False
    return time.time() - float(lease.get("renewed_at", 0)) < timeout_s


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
