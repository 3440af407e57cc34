# Two commands on a fresh machine with Python 3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit docs clean fuzz test-load bench

# Two stamps: the demo needs the package alone (flask, marshmallow, blinker, click); the tests,
# the docs and the benchmarks need the dev toolchain on top.
$(BIN)/.package: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(BIN)/.installed: pyproject.toml $(BIN)/.package
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.package
	$(BIN)/yalgaar-receiver demo

test: lint typecheck unit docs

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest

# The docs site (MkDocs, Material, mkdocstrings); --strict turns every warning (a broken link, a
# page missing from the nav, a bad docstring reference) into a failure, so `make test` fails too.
# Never add --quiet: it hides the warnings from the strict check, and a broken site passes.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Not part of `make test`: a few minutes of load on 127.0.0.1, figures in benchmarks/RESULTS.md.
bench: $(BIN)/.installed
	@command -v wrk >/dev/null 2>&1 || { echo "make bench needs wrk; on Debian or Ubuntu: apt-get install wrk" >&2; exit 2; }
	@command -v redis-server >/dev/null 2>&1 || { echo "make bench needs redis-server; on Debian or Ubuntu: apt-get install redis-server" >&2; exit 2; }
	cd benchmarks && ../$(BIN)/python bench.py --out RESULTS.md

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache .hypothesis .fuzz-corpus

# Fuzz parse_envelope and Receiver.handle for ten minutes (make test runs a bounded slice).
fuzz: $(BIN)/.installed
	mkdir -p .fuzz-corpus
	cp tests/payloads/* .fuzz-corpus/
	$(BIN)/python -m tests.fuzz -max_total_time=600 -max_len=4096 -artifact_prefix=.fuzz-corpus/ .fuzz-corpus

# The load and fault suite (tests/load): gunicorn, redis-server, 20,000 events; about a minute.
test-load: $(BIN)/.installed
	$(BIN)/pytest -o addopts="-ra --strict-markers" tests/load
