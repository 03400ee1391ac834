# The two commands of the README's quick start: `make demo` and `make test`.
# Both create .venv on first use; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch==2.13.0 (CPU) is taken from a local wheel directory when one exists; an
# unpinned torch from the registry is a multi-GB CUDA build.
WHEELS ?= /opt/wheels
PIP_FLAGS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS),)

.PHONY: demo test setup-test lint clean

$(BIN)/.installed-%: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_FLAGS) -e '.[$*]'
	touch $@

demo: $(BIN)/.installed-cpu,train
	$(BIN)/logdetect demo --workdir demo-out

setup-test: $(BIN)/.installed-cpu,train,test
	@for s in tests/setup/*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

lint: setup-test
	$(BIN)/ruff check agent trainer plugins tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
