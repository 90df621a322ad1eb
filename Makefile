# Two commands do all set-up on a fresh machine (each creates .venv when missing):
#   make demo   install, then train + register + export a defect model on the shipped tiles
#   make test   install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install system demo test test-fast repro lint bench ui

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and alone: pip takes these two wheels from this machine's disk (CUDA build, runs on CPU)
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# compat: the checkout goes on sys.path itself, so a folder named like a package (an `edge/` state
	# folder) in the directory a flow runs from cannot shadow the real package (tests/test_layout.py)
	$(BIN)/python -m pip install --quiet -e ".[platform,team,dev]" --config-settings editable_mode=compat
	$(BIN)/python -m pip check
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/shopfloor train defects --data data/magnetic_tiles

# the team stack's tests start PostgreSQL from the Debian package
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests use: PostgreSQL for the team stack, Chromium for the MLflow UI screenshots
system:
	@{ ls /usr/lib/postgresql/*/bin/initdb && command -v chromium; } >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql chromium; }

test: install system
	$(BIN)/python -m pytest -q --timeout=900 --durations=30 tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

repro: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

lint: install
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks.run_all

ui: install
	$(BIN)/shopfloor ui
