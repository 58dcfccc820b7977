PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Strict editable installs link each file, so a new module needs a reinstall.
PACKAGE_FILES := $(shell find core triggers cli daemon -name '*.py' -o -name '*.sql' -o -name py.typed 2>/dev/null)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml $(PACKAGE_FILES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/simtrail demo

test: lint
	$(BIN)/python -m pytest


lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy -p simtrail -p tests -p bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .simtrail
