# Two commands matter: `make demo` and `make test`. Both run `make setup` first when needed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# On a GPU cluster install the CUDA build instead, e.g.
#   make setup TORCH_SPEC=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.setup-done
DEMO_OUT ?= demo_out

.PHONY: setup demo test test-fast lint format clean image image-cpu demo-detect

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/openmmlab.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	@# 1. torch first, so that nothing later can pull a CUDA build onto a CPU machine
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@# 2. what mmcv's source build needs in the environment (--no-build-isolation)
	$(PIP) install -q "setuptools<70" wheel ninja "numpy>=1.26,<2.4" "opencv-python-headless>=4.8"
	@# 3. mmcv with its C++ ops from the sdist (about 15 min on 2 cores the first time;
	@#    pip caches the built wheel, later setups take seconds)
	MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-$$(nproc)} $(PIP) install -q --no-build-isolation --no-deps "mmcv==2.1.0"
	@# 4. the other OpenMMLab packages; like mmcv, without their requirement lists, which pull
	@#    GUI OpenCV builds (libGL) and newer mmengine; pyproject.toml lists what they import
	$(PIP) install -q --no-deps -r requirements/openmmlab.txt
	@# 5. this project (editable) with its test tools
	$(PIP) install -q -e ".[test]"
	@# 6. the drn placeholder into the installed mmaction (its wheel lacks it), so MMAction2's own tools import
	$(PY) -c "import core.compat as c; print('drn:', c.install_drn_package())" && $(PY) -c "import mmaction.models"
	$(PY) -c "import core.compat, mmcv.ops, mmaction.models, mmdet.models, ray, s3fs; print('setup ok')"
	@touch $(STAMP)

demo: setup
	$(PY) -m jobs.demo --output $(DEMO_OUT)

test: setup lint
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "unit" tests

lint: setup
	$(VENV)/bin/ruff check core jobs tests benchmarks configs
	$(VENV)/bin/ruff format --check core jobs tests benchmarks configs

format: setup
	$(VENV)/bin/ruff check --fix core jobs tests benchmarks configs
	$(VENV)/bin/ruff format core jobs tests benchmarks configs

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache

# Container images (infra/README.md): docker when its engine answers, else buildah (no daemon).
# IMAGE=tag, BASE_IMAGE=another FROM (e.g. a local stand-in where no registry is reachable).
image:
	bash infra/build.sh cuda

image-cpu:
	bash infra/build.sh cpu

# The spatio-temporal pipeline on a generated corpus with people: make_corpus → detect →
# evaluate (frame-mAP@0.5). The demo's models have random weights: this shows the job's
# mechanics and outputs, not detection accuracy.
demo-detect: setup
	$(PY) -m jobs.make_corpus --output $(DEMO_OUT)/people --num-videos 6 --num-classes 4 --seed 0 --spatiotemporal
	$(PY) -m jobs.detect --config configs/detect/demo.py --input $(DEMO_OUT)/people/manifest.csv --output $(DEMO_OUT)/detect --num-cpus 2 --cfg-options render.max_videos=1
	$(PY) -m jobs.evaluate --detections $(DEMO_OUT)/detect/detections --annotations $(DEMO_OUT)/people/ava_annotations.csv --label-map $(DEMO_OUT)/people/ava_label_map.pbtxt --output $(DEMO_OUT)/detect/eval
