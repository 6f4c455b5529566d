# Two commands do everything on a fresh machine (Debian/Ubuntu with Python 3.10+):
#   make run    set up, then the main job: train a small MEAMTM and classify a held-out clip
#   make test   set up, then the test suite
#   make demo   the web demo of the model that `make run` trained (http://127.0.0.1:7860)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: an unpinned torch (or one pulled in by another package) is a CUDA build of several GB.
TORCH_SPEC ?= torch==2.13.0
# torchcodec 0.13 is the release whose libraries load with torch 2.13.
TORCHCODEC_SPEC ?= torchcodec==0.13.0
# The demo's browser tests drive the system Chromium with Playwright (Playwright's own browser download needs
# network access that CI lacks).
CHROMIUM ?= /usr/bin/chromium
# `make demo` serves the model that `make run` trains (output_dir of meamtm/training/recipes/demo.json).
DEMO_MODEL ?= meamtm-builtin
FSDD ?= $(or $(MEAMTM_FSDD),../shared/data/fsdd)

.PHONY: setup run test common-tests benchmark demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	[ -x "$(CHROMIUM)" ] || missing="$$missing chromium"; \
	[ -z "$$missing" ] || { \
		echo "Installing$$missing (FFmpeg decodes audio; Chromium runs the demo's browser tests)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q "$(TORCHCODEC_SPEC)" -e ".[train,test,onnx,demo]" playwright
	touch $@

run: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/train.py --recipe demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

# transformers' own common model tests, from the sdist of the installed version (downloads it into build/).
common-tests: setup
	$(PY) scripts/transformers_common_tests.py

demo: setup
	@[ "$(DEMO_MODEL)" != meamtm-builtin ] || [ -f meamtm-builtin/config.json ] || { \
		echo "No model in meamtm-builtin: run 'make run' first, or 'make demo DEMO_MODEL=DIR_OR_HUB_ID'"; exit 1; }
	$(PY) -m meamtm.demo --model $(DEMO_MODEL) $$( [ -d "$(FSDD)/test" ] && echo --examples $(FSDD)/test )

benchmark: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
