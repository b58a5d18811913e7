# minist — the few commands people run. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned for the install here (it lies on this machine's disk); the package itself asks for a range.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
NB_OUT ?= build/notebooks
# every install goes through the tested lock (the versions CI last passed with); `make lock` refreshes it
LOCK ?= requirements/lock.txt

DEVICE_VENV ?= .venv-device

.PHONY: help setup lock tutorial lab test test-device lint bench figures sweep teacher student variable photos data web clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## create .venv and install minist with its dev tools from the lock (once)

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install -c $(LOCK) $(TORCH_PIN)
	$(BIN)/python -m pip install -c $(LOCK) -e ".[dev]"
	touch $@

lock: ## refresh requirements/lock.txt with the newest releases the ranges allow (scratch venv); then `make test`
	rm -rf build/lock-venv
	$(PY) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q --upgrade pip
	build/lock-venv/bin/python -m pip install -q $(TORCH_PIN)
	build/lock-venv/bin/python -m pip install -q -e ".[dev]"
	{ sed -n '/^#/p' $(LOCK); build/lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v '^minist'; } \
		> $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf build/lock-venv
	@echo "$(LOCK) refreshed; \`rm -rf $(VENV) && make test\` checks it (a changed photo or resampler fails loudly)"

tutorial: setup ## run every notebook top to bottom (offline default) → build/notebooks/*.ipynb and *.html
	$(BIN)/minist notebooks --out $(NB_OUT)

lab: setup ## open the notebooks interactively in JupyterLab
	$(BIN)/jupyter lab notebooks/

lint: setup ## ruff
	$(BIN)/ruff check minist tests device

NPM := $(shell command -v npm 2>/dev/null)

test: setup lint $(if $(NPM),web/node_modules/.installed) ## lint, the unit tests (the web page's too, where npm and Chromium are), the torch-free device's tests, and every notebook in quick mode
	OMP_NUM_THREADS=1 MINIST_QUICK=1 $(BIN)/python -m pytest -n 2 tests
	$(MAKE) test-device
	OMP_NUM_THREADS=1 MINIST_QUICK=1 $(BIN)/python -m pytest -n 2 --nbmake --nbmake-timeout=900 notebooks

$(DEVICE_VENV)/.installed: device/pyproject.toml $(wildcard device/minist_device/*.py) $(LOCK)
	$(PY) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install -q -c $(LOCK) --upgrade pip
	$(DEVICE_VENV)/bin/python -m pip install -c $(LOCK) "./device[test]"
	$(DEVICE_VENV)/bin/python -m pip install -q --no-deps --force-reinstall ./device   # changed sources, same version
	touch $@

test-device: setup $(DEVICE_VENV)/.installed ## the device package in its own venv (no torch) against a real server
	MINIST_MAIN_PYTHON=$(abspath $(BIN)/python) OMP_NUM_THREADS=1 $(DEVICE_VENV)/bin/python -m pytest -q device/tests

web/node_modules/.installed: web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund
	touch $@

web: setup web/node_modules/.installed ## the β explorer as a static web page → build/web/index.html (opens from disk)
	$(BIN)/minist web --out build/web

bench: setup ## print the benchmark table (data speed, teacher speed and accuracy)
	$(BIN)/minist bench

figures: setup ## redraw the README's figures into docs/
	$(BIN)/minist figures --out docs

sweep: setup ## the rate–accuracy study: every β and baseline (hours on a CPU; resumable), ship it, redraw
	$(BIN)/minist sweep
	$(BIN)/minist sweep --ship
	$(BIN)/minist figures --out docs

teacher: setup ## retrain the shipped mini teacher: three cosine cycles (≈2–3 h on a CPU; data/README.md), fp16 → data/
	$(BIN)/minist train-teacher --epochs 20 --out runs/teacher-mini
	$(BIN)/minist train-teacher --init runs/teacher-mini/teacher.pt --epochs 8 --epoch-offset 20 --lr 0.02 \
		--warmup-epochs 0.25 --out runs/teacher-mini-ft
	$(BIN)/minist train-teacher --init runs/teacher-mini-ft/teacher.pt --epochs 20 --epoch-offset 28 --lr 0.03 \
		--warmup-epochs 0.25 --out runs/teacher-mini-ft2 --ship --half

photos: setup ## the real-photo study on ../shared/data/imagenette (hours on a CPU; resumable) → data/results_imagenette.json, docs/rd_photos.png
	$(BIN)/minist photos all

student: setup ## retrain the shipped default-β mini student (≈14 min on one CPU thread with bf16), fp16 → data/
	$(BIN)/minist train-student --eval-stage1 true --out runs/student-mini --ship --half

variable: setup ## retrain the shipped variable-rate student (one model for every β; ≈47 min on one thread beside other jobs), fp16 → data/, then measure it against the per-β students (≈30 min) → data/results_variable_mini.json
	$(BIN)/minist train-student --method variable-rate --stage1-epochs 16 --stage2-epochs 4 --out runs/student-variable --ship --half
	$(BIN)/minist bench variable --write

data: setup ## rebuild data/fashion_mnist_subset.npz from the Debian package dataset-fashion-mnist
	$(BIN)/minist data make-subset --source debian

clean: ## remove build outputs (not the venv)
	rm -rf build .pytest_cache .ruff_cache
