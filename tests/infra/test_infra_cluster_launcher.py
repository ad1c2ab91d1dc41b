"""infra/cluster.yaml, offline: valid against the schema that Ray's cluster launcher itself
checks (ray/autoscaler/ray-schema.json, with jsonschema, both installed with ray), node types
that match their AWS instances, token auth, and no credentials in file mounts."""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest
import yaml
from mmengine.config import Config

from core.config import build
from core.pipeline.config import ExtractConfig
from core.pipeline.pools import layout
from tests.infra import manifests as m

pytestmark = pytest.mark.unit

# vCPUs and GPUs of the instance types the file uses (AWS's published sizes)
INSTANCES = {
    "m7i.2xlarge": (8, 0),
    "g6.4xlarge": (16, 1),
    "p4d.24xlarge": (96, 8),
    "p5.48xlarge": (192, 8),
}


@pytest.fixture(scope="module")
def config() -> dict:
    return m.cluster_launcher()


def test_valid_against_rays_launcher_schema(config):
    schema = json.loads(resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    for key in ("cluster_name", "provider", "head_node_type", "available_node_types", "docker"):
        assert key in config
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]


def test_schema_catches_a_broken_file(config):
    schema = json.loads(resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    broken = dict(config, max_workers="many")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_node_types_match_their_instances(config):
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = []
    for name, node in types.items():
        vcpus, gpus = INSTANCES[node["node_config"]["InstanceType"]]
        res = node["resources"]
        assert 0 <= res["CPU"] < vcpus or (name == config["head_node_type"] and res["CPU"] == 0)
        assert res.get("GPU", 0) == gpus, name
        if gpus:
            gpu_types.append(name)
            assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert len(gpu_types) >= 2


def test_smallest_gpu_node_holds_the_production_extract(config):
    cfg = Config.fromfile(str(m.REPO / "configs/extract/tsn_r50_400x100.py"))
    pool = layout(build(ExtractConfig, cfg.to_dict()), 1)  # CPU and NVDEC actors of one node
    for name, node in config["available_node_types"].items():
        res = node["resources"]
        if res.get("GPU"):
            cpus = pool.size * pool.num_cpus + cfg.pipeline.write_num_cpus  # + a write task
            assert res["CPU"] >= cpus, name
            assert pool.size * pool.num_gpus + cfg.localizer.num_gpus <= res["GPU"] + 1e-9


def test_ray_token_auth_and_a_driver_only_head(config):
    options = " ".join(config["docker"]["run_options"])
    assert "RAY_AUTH_MODE=token" in options
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "--num-cpus=0" in head
    assert any("auth_token" in c for c in config["setup_commands"])


def test_no_credentials_in_file_mounts_or_commands(config):
    assert not config.get("file_mounts"), "code is in the image; credentials never travel as files"
    assert not config.get("cluster_synced_files")
    text = m.CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert "aws_secret_access_key" not in text.lower()
    assert "AWS_SECRET_ACCESS_KEY" not in text
    assert "ssh_private_key" not in config.get("auth", {})


def test_the_file_is_plain_yaml():
    # no anchors or tags that another YAML reader (ray up's) would treat differently
    assert yaml.safe_load(m.CLUSTER_YAML.read_text()) == m.cluster_launcher()
