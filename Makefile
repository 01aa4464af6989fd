# Set-up is part of each target: a fresh machine needs only `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; set TORCH_SPEC= (empty) on a machine that should keep its own torch,
# or e.g. TORCH_SPEC="torch>=2.2" to let pip pick a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# A configured local copy of the datasets when the shared folder sits beside the checkout.
SHARED_DATA := $(abspath ../shared/data)
export RECOTORCH_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/ml-100k),$(SHARED_DATA),)

STAMP := $(VENV)/.installed

.PHONY: install quickstart test browser bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install "$(TORCH_SPEC)")
	$(BIN)/pip install -e ".[serve,tune,dev]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/recotorch quickstart

# The browser test drives Debian's Chromium; installing it needs root (apt). Elsewhere that
# test is skipped unless RECOTORCH_REQUIRE_BROWSER=1 (set by CI) makes a missing browser fail.
browser: $(STAMP)
	@echo "make: installing Chromium with apt (scripts/install_browser.sh; needs root or sudo; nothing to do if /usr/bin/chromium exists) for the browser test"
	@scripts/install_browser.sh $(BIN)/python || echo "make: no Chromium installed; the browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/rating.py
	$(BIN)/python benchmarks/ranking.py
	$(BIN)/python benchmarks/cold_start.py
