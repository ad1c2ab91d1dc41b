"""infra/Dockerfile and infra/Dockerfile.cpu, read statically: `make setup`'s install order,
pins that agree with pyproject.toml / Makefile / requirements, layers ordered for fast code
rebuilds, a non-root user, nothing secret, and an allowlist build context."""

from __future__ import annotations

import re

import pytest

from tests.infra import manifests as m

pytestmark = pytest.mark.unit

DOCKERFILES = [pytest.param(p, id=p.name) for p in m.DOCKERFILES]


def _runs(instructions):
    return [i.args for i in instructions if i.op == "RUN"]


def _first(instructions, pattern: str) -> int:
    for n, i in enumerate(instructions):
        if i.op == "RUN" and re.search(pattern, i.args):
            return n
    raise AssertionError(f"no RUN matches {pattern!r}")


def _copy_index(instructions, source: str) -> int:
    for n, i in enumerate(instructions):
        if i.op == "COPY" and source in i.args.split():
            return n
    raise AssertionError(f"no COPY of {source}")


@pytest.mark.parametrize("path", DOCKERFILES)
def test_install_order_is_make_setups(path):
    final = m.final_stage(m.dockerfile(path))
    steps = [
        _first(final, r"pip install .*torch==2\.13\.0|pip install /tmp/wheels/torch-2\.13\.0"),
        _first(final, r'pip install "setuptools<70" wheel ninja'),
        _first(final, r'pip install .*--no-deps "mmcv==2\.1\.0"'),
        _first(final, r"pip install --no-deps -r requirements/openmmlab\.txt"),
        _first(final, r"pip install -r /tmp/requirements\.txt"),
        _first(final, r"pip install --no-deps --no-build-isolation -e \."),
    ]
    assert steps == sorted(steps), f"{path.name}: install steps out of order: {steps}"


@pytest.mark.parametrize("path", DOCKERFILES)
def test_code_is_copied_after_every_dependency(path):
    final = m.final_stage(m.dockerfile(path))
    deps_done = _first(final, r"pip install -r /tmp/requirements\.txt")
    assert _copy_index(final, "pyproject.toml") < deps_done
    for source in ("core/", "jobs/", "configs/", "README.md"):
        assert _copy_index(final, source) > deps_done, f"{path.name}: {source} copied too early"
    # after the code only the editable install (seconds) remains
    assert final[-1].op == "RUN" and "-e ." in final[-1].args
    assert all(i.op != "RUN" for i in final[deps_done + 1 : -1])


@pytest.mark.parametrize("path", DOCKERFILES)
def test_pins_agree_with_makefile_and_pyproject(path):
    text = "\n".join(_runs(m.dockerfile(path)))
    make = m.makefile()
    torch = re.search(r"^TORCH_SPEC \?= (torch==\S+)", make, re.M).group(1)
    assert torch == "torch==2.13.0" and torch in text
    mmcv = re.search(r'"(mmcv==[^"]+)"', make).group(1)
    assert f'"{mmcv}"' in text
    assert "MMCV_WITH_OPS=1" in make and "MMCV_WITH_OPS=1" in text
    assert '"setuptools<70"' in make and '"setuptools<70"' in text
    numpy = m.pinned("numpy")
    assert f'"numpy{numpy}"' in text and f'"numpy{numpy}"' in make
    opencv = m.pinned("opencv-python-headless")
    assert f'"opencv-python-headless{opencv}"' in text
    mmcv_builds = [r for r in _runs(m.dockerfile(path)) if "pip wheel" in r]
    assert mmcv_builds and all("--no-build-isolation" in r for r in mmcv_builds)


@pytest.mark.parametrize("path", DOCKERFILES)
def test_base_image_matches_the_ray_and_python_pins(path):
    instructions = m.dockerfile(path)
    args = {
        i.args.split("=", 1)[0]: i.args.split("=", 1)[1]
        for i in instructions
        if i.op == "ARG" and "=" in i.args
    }
    base = args["BASE_IMAGE"]
    ray = m.pinned("ray").lstrip("=")
    assert base.startswith(f"rayproject/ray:{ray}-py311-"), base
    assert all(i.args.startswith("${BASE_IMAGE}") for i in instructions if i.op == "FROM")


def test_cuda_image_builds_mmcvs_cuda_ops_with_the_cuda_torch():
    instructions = m.dockerfile(m.INFRA / "Dockerfile")
    text = "\n".join(i.args for i in instructions)
    assert "https://download.pytorch.org/whl/cu128" in text
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cu128" in m.makefile()
    assert re.search(r"BASE_IMAGE=rayproject/ray:\S+-cu128$", text, re.M)
    build = next(r for r in _runs(instructions) if "pip wheel" in r)
    assert "FORCE_CUDA=1" in build and "MMCV_WITH_OPS=1" in build
    arch = re.search(r'TORCH_CUDA_ARCH_LIST="([^"]+)"', text).group(1).split(";")
    assert {"8.0", "9.0"} <= set(arch)  # A100, H100/H200
    # torch is installed before mmcv's build in the build stage too
    assert build.index("torch==2.13.0") < build.index("mmcv==2.1.0")


def test_cpu_image_installs_the_cpu_torch():
    text = "\n".join(i.args for i in m.dockerfile(m.INFRA / "Dockerfile.cpu"))
    assert "https://download.pytorch.org/whl/cpu" in text and "cu128" not in text
    assert "FORCE_CUDA" not in text


@pytest.mark.parametrize("path", DOCKERFILES)
def test_runs_as_a_non_root_user(path):
    final = m.final_stage(m.dockerfile(path))
    users = [i.args for i in final if i.op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")


SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL)", re.I)


@pytest.mark.parametrize("path", DOCKERFILES)
def test_no_credentials_baked_in(path):
    instructions = m.dockerfile(path)
    for i in instructions:
        if i.op in ("ENV", "ARG"):
            assert not SECRET_NAME.search(i.args), f"{path.name}: {i.op} {i.args}"
        if i.op in ("COPY", "ADD"):
            sources = [s for s in i.args.split() if not s.startswith("--")][:-1]
            for s in sources:
                assert not re.search(r"(\.aws|\.ssh|\.ray|auth_token|credentials|\.env$|~)", s), s
    assert not re.search(r"AKIA[0-9A-Z]{16}", path.read_text())


@pytest.mark.parametrize("path", DOCKERFILES)
def test_build_context_is_an_allowlist_that_holds_what_is_copied(path):
    ignore = (path.parent / f"{path.name}.dockerignore").read_text().split("\n")
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "the ignore file must exclude everything first"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert not allowed & {".git", ".venv", ".ci", "outputs", "demo_out", "tests"}
    for i in m.dockerfile(path):
        if i.op == "COPY" and "--from=" not in i.args:
            for s in [s for s in i.args.split() if not s.startswith("--")][:-1]:
                assert s.split("/")[0] in allowed, f"{path.name}: COPY {s} is ignored"


def test_make_image_targets():
    make = m.makefile()
    phony = re.search(r"^\.PHONY:(.*)$", make, re.M).group(1).split()
    for target, variant in (("image", "cuda"), ("image-cpu", "cpu")):
        assert target in phony
        body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", make, re.M).group(1)
        assert f"infra/build.sh {variant}" in body


def test_hadolint_passes():
    """Docker's own linter (the hadolint binary from the test extra) over both files."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is not installed: `make setup` installs it with the test extra"
    files = [str(p) for p in m.DOCKERFILES]
    config = str(m.REPO / "infra" / "hadolint.yaml")
    result = subprocess.run([exe, "-c", config, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
