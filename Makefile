# The two commands of the README's quick start: `make demo` and `make test`.
# Both create .venv on first use; later runs reuse it. `make test-deps` (optional, announced)
# installs the system packages a few tests need; `make test` itself never installs any.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# Where torch (the trainer's one large dependency) comes from, first match wins:
#  1. WHEELS: a local wheel directory holding torch==2.13.0+cpu, used when it exists (CI here).
#  2. No NVIDIA GPU here (no nvidia-smi): PyTorch's CPU-only index, TORCH_INDEX (one wheel of
#     about 190 MB). PyPI's default Linux torch is the CUDA build: torch plus about 20
#     nvidia/cuda/triton packages, several GB, useless without a GPU.
#  3. A GPU host, or TORCH_INDEX= (empty): torch from PyPI like every other package.
# The CPU index is only ever asked for torch and its own dependencies (a separate pip call), and
# never when a local wheel directory exists: an unreachable index costs retries per package.
WHEELS ?= /opt/wheels
HAVE_WHEELS := $(wildcard $(WHEELS))
HAVE_GPU := $(shell command -v nvidia-smi 2>/dev/null)
TORCH_INDEX ?= $(if $(HAVE_WHEELS)$(HAVE_GPU),,https://download.pytorch.org/whl/cpu)
TORCH_PIN := $(shell sed -n 's/^ *"\(torch==[^"]*\)",*$$/\1/p' pyproject.toml)
PIP_FLAGS := $(if $(HAVE_WHEELS),--find-links $(WHEELS),)
# The separate torch step, when the extras being installed include `train` and an index applies.
torch_step = $(if $(and $(TORCH_INDEX),$(findstring train,$(1))),\
	$(BIN)/pip install --index-url $(TORCH_INDEX) '$(TORCH_PIN)',)

.PHONY: demo test test-deps setup-test lint clean install-plan

$(BIN)/.installed-%: pyproject.toml
	@echo "== setting up $(VENV) with logdetect[$*]: first run only, a few minutes (torch: $(if $(HAVE_WHEELS),local wheel from $(WHEELS),$(if $(TORCH_INDEX),CPU build from $(TORCH_INDEX),PyPI's default build)))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(call torch_step,$*)
	$(BIN)/pip install --progress-bar on $(PIP_FLAGS) -e '.[$*]'
	touch $@

# What the set-up would run here, without running it (the README's "what gets downloaded").
install-plan:
	@echo "local wheel directory: $(if $(HAVE_WHEELS),$(WHEELS),none ($(WHEELS) does not exist))"
	@echo "NVIDIA GPU (nvidia-smi): $(if $(HAVE_GPU),yes,no)"
	@echo "torch step: $(or $(strip $(call torch_step,train)),none)"
	@echo "main step: $(BIN)/pip install $(PIP_FLAGS) -e '.[cpu,train]'"

demo: $(BIN)/.installed-cpu,train
	$(BIN)/logdetect demo --workdir demo-out

# Optional: the system packages and tools a few tests use (Chromium for the HTML report, about
# 113 MB to download and 480 MB on disk; systemd for the unit checks; the npm Forward client;
# nats-server for the JetStream source and sink).
# Without them those tests skip and say so; under CI=true they fail. .ci/run calls this first.
test-deps:
	@echo "== make test-deps: installing what some tests need (Chromium, systemd, the npm client @fluent-org/logger, nats-server)"
	@for s in tests/setup/*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

setup-test: $(BIN)/.installed-cpu,train,fleet,test

lint: setup-test
	$(BIN)/ruff check agent trainer plugins tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
