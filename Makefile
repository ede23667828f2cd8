# Two commands do everything: `make run` and `make test`. Each sets up what it
# needs (the virtualenv, the project, Chromium for the browser tests) and is
# safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
STAMP := $(VENV)/.installed

.PHONY: run test lint check-chromium bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# compat mode: setuptools' default editable mode hides twisted/plugins from
# Twisted's plugin discovery. The last line rebuilds Twisted's plugin cache.
$(STAMP): $(BIN)/python setup.py pyproject.toml
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

run: $(STAMP)
	$(BIN)/twistd -n ssedemo --port $(PORT)

check-chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium', then 'make test' again." >&2; \
		exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sse_twisted

test: $(STAMP) check-chromium lint
	$(BIN)/pytest --cov=sse_twisted --cov-report=term-missing:skip-covered

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage

# The load benchmark: ssedemo against its peers, several repetitions.
# Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--clients 1000".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
