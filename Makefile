# rank-search developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= runs

.PHONY: install demo test test-all bench clean

# One install step for everything: torch/torchvision pinned as a matched pair by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rank-search train --model lenet5 --dataset mnist5k --method posthoc --ranks ratio:0.25 \
		--epochs 3 --out $(OUT)/demo --overwrite

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(OUT) .pytest_cache
