# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# tests run in TEST_JOBS processes, a test file to each (1: one process)
TEST_JOBS ?= 2

.PHONY: demo test bench ui clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

# the joint pruning + quantization search on a digits CNN, against fp32 / int8 / int4 / sensitivity
demo: $(STAMP)
	$(BIN)/tradeoff run recipes/digits_compress.yaml

# the layer contract (import-linter) and ruff first; pytest exits 5 when it collects no tests,
# which is not a failure of the project
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/search_efficiency.py

ui: $(STAMP)
	$(BIN)/tradeoff ui

clean:
	rm -rf $(VENV) .tradeoff mlruns mlflow.db
