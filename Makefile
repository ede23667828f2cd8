# Two commands do everything: `make run` and `make test`. Each sets up what it
# needs (the virtualenv, the project, the Debian packages the tests start) and is
# safe to run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
STAMP := $(VENV)/.installed

.PHONY: run test lint docs system-packages bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# compat mode: setuptools' default editable mode hides twisted/plugins from
# Twisted's plugin discovery. The last line rebuilds Twisted's plugin cache.
# The editable install also builds the compiled parts (the fan-out's
# sse_twisted/_fanout.c, the head parser's sse_twisted/transport/_head.c) in
# place, so it is redone when their sources change.
$(STAMP): $(BIN)/python setup.py pyproject.toml sse_twisted/_fanout.c sse_twisted/transport/_head.c
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

run: $(STAMP)
	$(BIN)/twistd -n ssedemo --port $(PORT)

# Debian packages the tests need: gcc and python3-dev (to build the compiled
# fan-out), and those they start for real: chromium (browser tests),
# redis-server (scale-out), systemd (systemd-socket-activate, systemd-analyze),
# openssl (test certificates) and curl (HTTP/2 checks). When a command of
# theirs is missing they are installed with apt-get as root; otherwise the
# command to run is named.
TEST_COMMANDS := gcc python3-config chromium redis-server systemd-socket-activate \
	systemd-analyze openssl curl

system-packages:
	@for command in $(TEST_COMMANDS); do \
		command -v "$$command" >/dev/null 2>&1 || missing=yes; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing the Debian packages the tests need"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			gcc python3-dev chromium redis-server systemd openssl curl; \
	else \
		echo "The tests need Debian packages: run 'sudo apt-get install gcc python3-dev chromium redis-server systemd openssl curl', then 'make test' again." >&2; \
		exit 1; \
	fi

# lint-imports checks the layers set down in pyproject.toml and names the
# import that breaks one.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sse_twisted
	$(BIN)/lint-imports --no-cache

# The API reference, from the docstrings, into apidocs/ (open
# apidocs/index.html). Warnings are errors: a broken L{...} link or a bad
# docstring fails the build. Links into Twisted's own reference resolve
# through an inventory of the installed Twisted, made once.
INVENTORY := build/inventories/twisted.inv
TWISTED_API := https://docs.twisted.org/en/stable/api/

$(INVENTORY): $(STAMP)
	mkdir -p build/inventories
	$(BIN)/pydoctor --quiet --make-intersphinx --html-output=build/inventories/twisted \
		"$$($(BIN)/python -c 'import os, twisted; print(os.path.dirname(twisted.__file__))')"
	mv build/inventories/twisted/objects.inv $@

docs: $(STAMP) $(INVENTORY)
	$(BIN)/pydoctor --quiet --warnings-as-errors --docformat=epytext \
		--project-name=ssedemo --html-output=apidocs \
		--intersphinx-file=$(INVENTORY)::$(TWISTED_API) sse_twisted

# The whole suite runs twice: with the compiled parts (which must have been
# built: the tests run where a C compiler is), then with the same work in
# Python (SSEDEMO_PURE_PYTHON=1), as where they cannot be built.
test: system-packages $(STAMP) lint docs
	@$(BIN)/python -c "import sse_twisted._fanout, sse_twisted.transport._head" || { \
		echo "The compiled parts were not built: is a C compiler installed?" >&2; exit 1; }
	$(BIN)/pytest --cov=sse_twisted --cov-report=
	SSEDEMO_PURE_PYTHON=1 $(BIN)/pytest --cov=sse_twisted --cov-append \
		--cov-report=term-missing:skip-covered

clean:
	rm -rf $(VENV) build dist apidocs *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage

# The load benchmark: ssedemo against its peers, several repetitions.
# Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--clients 1000".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
