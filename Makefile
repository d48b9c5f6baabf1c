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
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,deploy,tracking]"
	touch $(STAMP)

install: $(STAMP)

# The main job: a 16-trial search on the embedded MNIST subset, then its report and best config.
demo: install
	@name=demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/rank-search launch --space demo --num-samples 16 --storage $(OUT) --name $$name && \
	$(BIN)/rank-search analyze $(OUT)/$$name --out $(OUT)/$$name-report && \
	$(BIN)/rank-search export $(OUT)/$$name --pick knee --weights --out $(OUT)/$$name-best.yaml && \
	echo "Pareto plot: $(OUT)/$$name-report/pareto_front.png  report: $(OUT)/$$name-report/report.html" && \
	echo "best config: $(OUT)/$$name-best.yaml"

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

# Sections go to BENCH_OUT; copy the ones that replace today's into benchmarks/RESULTS.md by hand.
BENCH_OUT ?= benchmarks/history/bench-latest.md
bench: install
	$(BIN)/python benchmarks/methods.py --out $(BENCH_OUT)
	$(BIN)/python benchmarks/tune_overhead.py --epochs 3 --repeats 2 --out $(BENCH_OUT)
	$(BIN)/python benchmarks/search_quality.py --seeds 3 --trials 16 --random-trials 64 --epochs 2 --out $(BENCH_OUT)
	$(BIN)/python benchmarks/bn_recalibration.py --model resnet20 --seeds 3 --targets 3,5,8 --out $(BENCH_OUT)
	$(BIN)/python benchmarks/profile_speed.py --model resnet20 --dataset mnist5k --out $(BENCH_OUT)

clean:
	rm -rf $(OUT) .pytest_cache
