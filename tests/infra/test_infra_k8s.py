"""infra/k8s/: every manifest parses; RayJob entrypoints name real job modules, real config
files and real config keys; pods can hold what the job configs ask of Ray (actors, CPUs,
GPUs); one image everywhere; S3 credentials and the Ray token come from Secrets."""

from __future__ import annotations

import importlib
import math

import pytest
from mmengine.config import Config

from core.config import build
from core.pipeline.config import ExtractConfig
from core.pipeline.pools import layout
from tests.infra import manifests as m

pytestmark = pytest.mark.unit

RAY_KINDS = {"RayCluster", "RayJob"}


def test_every_manifest_has_a_known_api_version_and_kind():
    docs = m.k8s_documents()
    assert docs
    for path, doc in docs:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        if kind in RAY_KINDS:
            assert api == "ray.io/v1", f"{path.name}: {kind} {api}"
        else:
            assert (kind, api) == ("Secret", "v1"), f"{path.name}: {kind} {api}"
        assert doc["metadata"]["name"]


def test_ray_version_is_the_pinned_one():
    ray = m.pinned("ray").lstrip("=")
    for name, spec in m.cluster_specs():
        assert spec["rayVersion"] == ray, name


def _job(module: str) -> dict:
    jobs = [j for j in m.of_kind("RayJob") if m.entrypoint_argv(j)[0] == module]
    assert len(jobs) == 1, f"one RayJob for {module}, found {len(jobs)}"
    return jobs[0]


def _parsed(job: dict):
    """The entrypoint parsed by the job's own argument parser, and its config through
    mmengine (so ``_base_`` files resolve) with the --cfg-options merged."""
    module, args = m.entrypoint_argv(job)
    assert (m.REPO / (module.replace(".", "/") + ".py")).is_file(), module
    ns = importlib.import_module(module).parse_args(args)
    config_path = m.repo_path(ns.config)
    assert config_path.is_file(), f"{ns.config} is not in the repository"
    cfg = Config.fromfile(str(config_path))
    options = dict(ns.cfg_options or {})
    for key in options:
        m.lookup(cfg, key)  # KeyError: not a key of the config
    cfg.merge_from_dict(options)
    return ns, cfg


@pytest.mark.parametrize("module", ["jobs.extract", "jobs.train"])
def test_entrypoints_name_real_modules_configs_and_keys(module):
    ns, cfg = _parsed(_job(module))
    assert ns.output.startswith("s3://")


def test_cfg_option_lookup_rejects_unknown_keys():
    cfg = Config.fromfile(str(m.REPO / "configs/extract/tsn_r50_400x100.py"))
    assert m.lookup(cfg, "extractor.num_actors") >= 1
    with pytest.raises(KeyError):
        m.lookup(cfg, "extractor.num_actorz")


def _pods(spec: dict, count: str) -> list[dict]:
    """Each worker pod of a cluster (``count``: the group's replicas, minReplicas or
    maxReplicas) as its Ray resources, checked against the container's limits."""
    pods = []
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        params = group["rayStartParams"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        requests = group["template"]["spec"]["containers"][0]["resources"]["requests"]
        cpus = float(params["num-cpus"])
        gpus = int(params.get("num-gpus", 0))
        assert cpus <= m.quantity(limits["cpu"]), group["groupName"]
        assert (
            gpus == int(limits.get("nvidia.com/gpu", 0)) == int(requests.get("nvidia.com/gpu", 0))
        )
        for _ in range(group[count]):
            pods.append({"CPU": cpus, "GPU": [1.0] * gpus})
    return pods


def _place(pods: list[dict], cpu: float, gpu: float) -> bool:
    """First fit of one actor or task onto the pods; a fractional GPU share must fit on one GPU
    (as Ray assigns it)."""
    eps = 1e-9
    for pod in pods:
        if pod["CPU"] + eps < cpu:
            continue
        if gpu == 0:
            pod["CPU"] -= cpu
            return True
        whole = math.floor(gpu + eps)
        if gpu >= 1 - eps:
            free = [i for i, g in enumerate(pod["GPU"]) if g >= 1 - eps]
            if len(free) >= whole:
                for i in free[:whole]:
                    pod["GPU"][i] = 0.0
                pod["CPU"] -= cpu
                return True
            continue
        for i, free_share in enumerate(pod["GPU"]):
            if free_share + eps >= gpu:
                pod["GPU"][i] -= gpu
                pod["CPU"] -= cpu
                return True
    return False


def _head_runs_no_work(spec: dict) -> None:
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_extract_cluster_holds_the_configs_actors():
    job = _job("jobs.extract")
    _, cfg = _parsed(job)
    spec = job["spec"]["rayClusterSpec"]
    _head_runs_no_work(spec)
    ex, loc = cfg.extractor, cfg.localizer
    assert ex.num_gpus > 0 and loc.num_gpus > 0, "the GPU job runs both models on GPUs"
    for count in ("replicas", "maxReplicas"):
        pods = _pods(spec, count)
        gpu_pods = sum(1 for pod in pods if pod["GPU"])
        pool = layout(build(ExtractConfig, cfg.to_dict()), gpu_pods)  # CPU and NVDEC actors
        demands = [(pool.num_cpus, pool.num_gpus)] * pool.size
        demands += [(1.0 if loc.num_gpus == 0 else 0.0, loc.num_gpus)] * loc.get("num_actors", 1)
        demands += [(cfg.pipeline.write_num_cpus, 0.0)]  # a Parquet write task
        for cpu, gpu in demands:
            assert _place(pods, cpu, gpu), f"{count}: no room for an actor ({cpu} CPU, {gpu} GPU)"
    # and the GPU is not oversubscribed at the config's layout on one pod
    one_pod = layout(build(ExtractConfig, cfg.to_dict()), 1)
    assert one_pod.size * one_pod.num_gpus + loc.num_gpus <= 1.0 + 1e-9


def test_extract_cluster_autoscales_within_bounds():
    spec = _job("jobs.extract")["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    gpu_groups = [g for g in spec["workerGroupSpecs"] if "num-gpus" in g["rayStartParams"]]
    assert gpu_groups and all(g["maxReplicas"] > g["minReplicas"] >= 0 for g in gpu_groups)


def test_train_cluster_holds_the_configs_workers():
    job = _job("jobs.train")
    ns, cfg = _parsed(job)
    train = importlib.import_module("jobs.train")
    cfg.merge_from_dict(train.cli_overrides(ns))
    scaling = cfg.scaling
    assert scaling.use_gpu is True and scaling.num_workers >= 1
    spec = job["spec"]["rayClusterSpec"]
    _head_runs_no_work(spec)
    # Ray Train starts all workers together: the group must be there without autoscaling
    assert spec.get("enableInTreeAutoscaling") is False
    pods = _pods(spec, "replicas")
    for _ in range(scaling.num_workers):
        assert _place(pods, float(scaling.cpus_per_worker), 1.0), "no room for a train worker"
    assert sum(p["CPU"] for p in pods) >= 1, "no CPU left for Ray Data's reads"
    assert cfg.batch_size % scaling.num_workers == 0


def test_long_lived_cluster_has_an_autoscaling_gpu_group():
    (cluster,) = m.of_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    _head_runs_no_work(spec)
    gpu = [g for g in spec["workerGroupSpecs"] if int(g["rayStartParams"].get("num-gpus", 0)) > 0]
    assert gpu and gpu[0]["maxReplicas"] > gpu[0]["minReplicas"] >= 0
    # one pod of it holds the production extract layout (CPU and NVDEC actors, the localizer,
    # a write task)
    cfg = Config.fromfile(str(m.REPO / "configs/extract/tsn_r50_400x100.py"))
    pool = layout(build(ExtractConfig, cfg.to_dict()), 1)
    pod = {"CPU": float(gpu[0]["rayStartParams"]["num-cpus"]), "GPU": [1.0]}
    for _ in range(pool.size):
        assert _place([pod], pool.num_cpus, pool.num_gpus)
    assert _place([pod], 0.0, cfg.localizer.num_gpus)
    assert _place([pod], cfg.pipeline.write_num_cpus, 0.0)


def test_one_image_everywhere():
    images = {c["image"] for c in m.all_containers()}
    launcher = m.cluster_launcher()["docker"]["image"]
    assert images == {launcher}, images | {launcher}
    (image,) = images
    assert image.rsplit(":", 1)[1] == f"{m.project_version()}-cu128"


def _secret_keys() -> dict[str, set[str]]:
    secrets = {}
    for s in m.of_kind("Secret"):
        secrets[s["metadata"]["name"]] = set(s.get("stringData", {})) | set(s.get("data", {}))
    return secrets


def _from_secret(env: dict, name: str, secrets: dict[str, set[str]]) -> None:
    assert name in env, f"missing {name}"
    ref = env[name].get("valueFrom", {}).get("secretKeyRef")
    assert ref, f"{name} must come from a Secret (valueFrom.secretKeyRef)"
    assert ref["key"] in secrets.get(ref["name"], set()), f"{name}: no Secret {ref}"


def test_ray_token_auth_everywhere():
    secrets = _secret_keys()
    envs = [m.env_of(c) for c in m.all_containers()]
    for _, spec in m.cluster_specs():
        if spec.get("enableInTreeAutoscaling"):
            envs.append({e["name"]: e for e in spec["autoscalerOptions"]["env"]})
    for env in envs:
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        _from_secret(env, "RAY_AUTH_TOKEN", secrets)


def test_s3_credentials_come_from_a_secret():
    secrets = _secret_keys()
    for _, spec in m.cluster_specs():
        for container in m.ray_containers(spec):
            env = m.env_of(container)
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                _from_secret(env, name, secrets)
    for container in m.all_containers():
        for e in container.get("env", []):
            if any(w in e["name"] for w in ("SECRET", "TOKEN", "KEY_ID", "PASSWORD")):
                assert "value" not in e, f"{e['name']} is a literal value"


def test_example_secrets_hold_placeholders_only():
    for s in m.of_kind("Secret"):
        for key, value in s.get("stringData", {}).items():
            if any(w in key.upper() for w in ("SECRET", "TOKEN", "KEY_ID")):
                assert str(value).startswith("REPLACE_"), f"{key} looks like a real value"
        assert "data" not in s, "base64 data hides what is in it: use stringData placeholders"
