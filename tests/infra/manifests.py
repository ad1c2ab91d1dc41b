"""Readers for the deployment files under ``infra/``: Dockerfiles, Kubernetes manifests, the
Ray cluster-launcher config, and the pins they must agree with (pyproject, Makefile)."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex
from typing import Any

import tomllib
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
DOCKERFILES = (INFRA / "Dockerfile", INFRA / "Dockerfile.cpu")
CLUSTER_YAML = INFRA / "cluster.yaml"
APP_DIR = "/home/ray/action-finder"


# ---- pins -----------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def project_version() -> str:
    return pyproject()["project"]["version"]


def pinned(requirement_name: str) -> str:
    """The version spec of a dependency in pyproject.toml, e.g. ``==2.60.0`` for ray."""
    for req in pyproject()["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?(.*)$", req)
        if m and m.group(1).lower() == requirement_name.lower():
            return m.group(3).strip()
    raise KeyError(requirement_name)


def makefile() -> str:
    return (REPO / "Makefile").read_text()


# ---- Dockerfiles ----------------------------------------------------------------------------


@dataclasses.dataclass
class Instruction:
    op: str  # FROM, RUN, COPY, ... (upper case)
    args: str  # the rest of the logical line, continuations joined
    stage: int  # index of the FROM it belongs to


def dockerfile(path: pathlib.Path) -> list[Instruction]:
    """Logical instructions of a Dockerfile (comments dropped, ``\\`` continuations joined)."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        op, _, args = logical.partition(" ")
        op = op.upper()
        if op == "FROM":
            stage += 1
        out.append(Instruction(op, args.strip(), stage))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


# ---- YAML -----------------------------------------------------------------------------------


def k8s_documents() -> list[tuple[pathlib.Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """(name, RayCluster spec) of every cluster: RayClusters and each RayJob's own."""
    specs = [(d["metadata"]["name"], d["spec"]) for d in of_kind("RayCluster")]
    specs += [(d["metadata"]["name"], d["spec"]["rayClusterSpec"]) for d in of_kind("RayJob")]
    return specs


def ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The head's and every worker group's containers of a RayCluster spec."""
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def all_containers() -> list[dict[str, Any]]:
    containers = [c for _, spec in cluster_specs() for c in ray_containers(spec)]
    for job in of_kind("RayJob"):
        containers += job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    return containers


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def cluster_launcher() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


# ---- entrypoints and configs ----------------------------------------------------------------


def entrypoint_argv(job: dict[str, Any]) -> tuple[str, list[str]]:
    """A RayJob's ``python -m jobs.<name> ARGS`` as (module, ARGS)."""
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"], f"entrypoint must be `python -m jobs.<name>`: {argv}"
    return argv[2], argv[3:]


def repo_path(path: str) -> pathlib.Path:
    """A path in an entrypoint (relative to the job's working dir, or under the image's
    copy of the repository) as a path in this checkout."""
    if path.startswith(APP_DIR + "/"):
        path = path[len(APP_DIR) + 1 :]
    return REPO / path


def lookup(cfg: Any, dotted: str) -> Any:
    """The value at ``a.b.c`` of a loaded mmengine Config; KeyError if any part is missing."""
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (CPU cores or bytes): ``500m``, ``15``, ``48Gi``."""
    s = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6}
    for suffix, factor in units.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * factor
    return float(s)
