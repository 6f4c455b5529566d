# Two commands do everything on a fresh machine (Debian/Ubuntu with Python 3.10+):
#   make run    set up, then the main job: train a small MEAMTM and classify a held-out clip
#   make test   set up, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: an unpinned torch (or one pulled in by another package) is a CUDA build of several GB.
TORCH_SPEC ?= torch==2.13.0
# torchcodec 0.13 is the release whose libraries load with torch 2.13.
TORCHCODEC_SPEC ?= torchcodec==0.13.0

.PHONY: setup run test benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { \
		echo "Installing FFmpeg (torchcodec and the audio pipeline decode with it)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q "$(TORCHCODEC_SPEC)" -e ".[train,test,onnx]"
	touch $@

run: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/train.py --recipe demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

benchmark: setup
	HF_HUB_OFFLINE=1 $(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
