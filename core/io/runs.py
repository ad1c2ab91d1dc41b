"""Run records under an output (``_runs/<run>/record.json``) and the rule they enforce: one
output holds the results of one config and model, so that reruns and resumes add to it."""

from __future__ import annotations

import dataclasses

from core import storage
from core.io.leases import RUNS_DIR


@dataclasses.dataclass
class RunSummary:
    """What a run over a video corpus did (each job adds its own counts)."""

    run_id: str
    output_uri: str
    num_inputs: int
    num_skipped: int
    """Videos already done by earlier runs."""
    num_ok: int
    """Videos this run committed with results."""
    num_failed: int
    """Videos this run committed as failed for good (an error row)."""
    seconds: float
    errors_by_stage: dict[str, int]

    @property
    def failed_fraction(self) -> float:
        processed = self.num_ok + self.num_failed
        return self.num_failed / processed if processed else 0.0


class OutputConflictError(RuntimeError):
    """The output already holds results of a different config or checkpoint."""


def record_uri(output_uri: str, run_id: str) -> str:
    return storage.join(output_uri, RUNS_DIR, run_id, "record.json")


def check_previous_runs(output_uri: str, fingerprint: str) -> None:
    """Raises :class:`OutputConflictError` if an earlier run here had another fingerprint.

    Reads one record per run (a few per output, whatever the number of videos).
    """
    base = storage.join(output_uri, RUNS_DIR)
    if not storage.exists(base):
        return
    for uri in storage.list_files(base, (".json",)):
        if not uri.endswith("record.json"):
            continue
        record = storage.read_json(uri)
        if record.get("fingerprint") not in (None, fingerprint):
            raise OutputConflictError(
                f"{output_uri} already holds results of run {record.get('run_id')} made with "
                "another config or checkpoint; write to a new --output (or delete the old one)"
            )
