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

.PHONY: setup demo test test-fast lint format clean image image-cpu demo-detect detect-models

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

# The spatio-temporal pipeline on generated corpora with people, with models that learned:
# detect-models trains the demo config's two models (a tiny Faster R-CNN person detector and
# a tiny SlowOnly + AVA RoI head action model) on 48 training videos on the CPU (about 3 min,
# bounded by configs/detect/train_demo.py); demo-detect then runs make_corpus (6 other videos)
# → detect → evaluate (frame-mAP@0.5) twice, with the untrained (random, seeded) and the
# trained models, prints both and renders one video with the trained ones.
DETECT_MODELS ?= $(DEMO_OUT)/detect_models
DETECT_OPTS = action.label_map=$(DEMO_OUT)/people/ava_label_map.pbtxt action.score_thr=0.05

detect-models: setup
	rm -rf $(DETECT_MODELS)
	$(PY) -m jobs.make_corpus --output $(DEMO_OUT)/people_train --num-videos 48 --num-classes 4 --seed 1 --spatiotemporal
	$(PY) -m jobs.train_detect --config configs/detect/train_demo.py --input $(DEMO_OUT)/people_train/manifest.csv --annotations $(DEMO_OUT)/people_train/ava_annotations.csv --output $(DETECT_MODELS)

demo-detect: detect-models
	rm -rf $(DEMO_OUT)/detect $(DEMO_OUT)/detect_untrained
	$(PY) -m jobs.make_corpus --output $(DEMO_OUT)/people --num-videos 6 --num-classes 4 --seed 0 --spatiotemporal
	$(PY) -m jobs.detect --config configs/detect/demo.py --input $(DEMO_OUT)/people/manifest.csv --output $(DEMO_OUT)/detect_untrained --num-cpus 2 --cfg-options $(DETECT_OPTS) render.max_videos=0
	$(PY) -m jobs.evaluate --detections $(DEMO_OUT)/detect_untrained/detections --annotations $(DEMO_OUT)/people/ava_annotations.csv --label-map $(DEMO_OUT)/people/ava_label_map.pbtxt --output $(DEMO_OUT)/detect_untrained/eval
	$(PY) -m jobs.detect --config configs/detect/demo.py --input $(DEMO_OUT)/people/manifest.csv --output $(DEMO_OUT)/detect --num-cpus 2 --cfg-options $(DETECT_OPTS) detector.checkpoint=$(DETECT_MODELS)/detector.pth action.checkpoint=$(DETECT_MODELS)/action.pth render.max_videos=1
	$(PY) -m jobs.evaluate --detections $(DEMO_OUT)/detect/detections --annotations $(DEMO_OUT)/people/ava_annotations.csv --label-map $(DEMO_OUT)/people/ava_label_map.pbtxt --output $(DEMO_OUT)/detect/eval
	@$(PY) -c 'import json, sys; m = [json.load(open(p))["frame_mAP@0.5"] for p in sys.argv[1:]]; print(f"frame-mAP@0.5 on the 6 held-out videos: untrained {m[0]}, trained {m[1]}")' $(DEMO_OUT)/detect_untrained/eval/metrics.json $(DEMO_OUT)/detect/eval/metrics.json
