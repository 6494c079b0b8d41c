# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test deps venv bench clean

demo: deps venv
	$(BIN)/boinc-ext demo

test: deps venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

deps:
	./scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

bench: deps venv
	$(BIN)/python bench/create_work.py

clean:
	rm -rf $(VENV) build *.egg-info
