# Two commands matter: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv when it is missing or older than pyproject.toml, and installs everything.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast checks train bench gpu-check data lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch 2.13.0 first: on a CPU machine the local CPU wheel, so nothing pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

# Fashion-MNIST from the Debian package (the default data of deep.train); skipped if present.
data:
	@if [ -d $(FMNIST_DIR) ] && ls $(FMNIST_DIR) | grep -q idx; then \
		echo "Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; deep.train will ask for --data-root"; \
	else \
		echo "warning: no apt-get; put the Fashion-MNIST IDX files in a folder and pass --data-root"; \
	fi

demo: $(STAMP)
	$(PY) -m ufm.simulate --imbalance 100

test: $(STAMP) data
	$(PY) -m ruff check .
	@# pytest exits 5 when it collects nothing; that is a failure of the suite here too.
	$(PY) -m pytest -q -x --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; fi; exit $$rc

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

checks: $(STAMP)
	$(PY) -m proofs_checks

train: $(STAMP) data
	$(PY) -m deep.train

bench: $(STAMP)
	$(PY) -m benchmarks

# The prepared check of a GPU slot (python -m benchmarks gpu; README "On a GPU"). It needs no
# set-up: the .venv when there is one, else python3 with torch; ARGS=--tiny runs it on the CPU.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) -m benchmarks gpu $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
