# rank-search developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= runs

.PHONY: install demo test test-all test-min-deps bench clean

# One install step for everything: torch/torchvision pinned as a matched pair by constraints.txt.
# $(1): the venv; $(2): more pip options (test-min-deps adds its constraints).
define install_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --upgrade --quiet pip
	$(1)/bin/pip install --quiet -c constraints.txt $(2) -e ".[dev,deploy,tracking]"
endef

$(STAMP): pyproject.toml constraints.txt
	$(call install_venv,$(VENV),)
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

# The lowest ray and optuna that pyproject.toml declares (its `>=` bounds, pinned with `==`), in a
# second venv with the same torch pair: the Ray and resume tests must pass there too (.ci/run).
MIN_VENV ?= .venv-min-deps
MIN_STAMP := $(MIN_VENV)/.installed-stamp
# the default suite's Ray tests, then the resume tests that start no Ray
MIN_TESTS ?= tests/test_private_api.py tests/search/test_journal.py tests/search/test_driver_lock.py \
	tests/search/test_resume_hardening.py
$(MIN_STAMP): pyproject.toml constraints.txt
	mkdir -p $(MIN_VENV)
	sed -nE 's/^ *"(ray)\[tune\]>=([0-9.]+),<.*/\1==\2/p; s/^ *"(optuna)>=([0-9.]+),<.*/\1==\2/p' \
		pyproject.toml > $(MIN_VENV)/lowest.txt
	test "$$(wc -l < $(MIN_VENV)/lowest.txt)" -eq 2
	$(call install_venv,$(MIN_VENV),-c $(MIN_VENV)/lowest.txt)
	touch $(MIN_STAMP)

test-min-deps: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -c "import ray, optuna; print('lowest declared: ray', ray.__version__, 'optuna', optuna.__version__)"
	$(MIN_VENV)/bin/python -m pytest -q -m "ray and not slow"
	$(MIN_VENV)/bin/python -m pytest -q $(MIN_TESTS)

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
