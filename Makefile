# llamasup: `make serve` runs the server, `make test` runs the whole suite; both do all set-up first.
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUNNER = $$(./build_runner.sh | tail -n 1)
PYTEST_ARGS ?=
# torch for the convert extra, pinned exactly and installed first: where a local CPU wheel is on
# pip's find-links (CI, /opt/wheels) pip takes it instead of resolving a multi-GB CUDA build.
TORCH ?= torch==2.13.0

# Debian's CNCF distribution registry (v2.8), started by the registry tests on 127.0.0.1; sudo only when not root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null

.PHONY: install runner registry serve test typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PYTHON) -m pip install --quiet --disable-pip-version-check '$(TORCH)'
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test,convert]'
	touch $(STAMP)

## install: create .venv, install llamasup with its test and convert extras, build (or reuse) the runner
install: $(STAMP) runner

## runner: build llama.cpp from pinned source into ~/.cache/llamasup/runners (a no-op when cached)
runner:
	./build_runner.sh

## registry: install docker-registry for the registry tests (a no-op when present); apt-get update only if
## the first try fails (a fresh machine's empty package lists); the service the package starts is disabled,
## since the tests start their own registries on 127.0.0.1
registry:
	@command -v docker-registry >/dev/null || { \
		{ $(APT_INSTALL) 2>/dev/null || { $(SUDO) apt-get update -qq && $(APT_INSTALL); }; } && \
		{ $(SUDO) systemctl disable --now docker-registry.service >/dev/null 2>&1 || true; }; }

## serve: run the server on 127.0.0.1:11434 with the default store (~/.ollama/models)
serve: install
	LLAMASUP_LLAMA_SERVER="$(RUNNER)" $(VENV)/bin/llamasup serve

## typecheck: mypy --strict over supervisor/
typecheck: $(STAMP)
	$(PYTHON) -m mypy

## test: type-check, then the whole suite (unit, integration with a fake runner and a real registry, e2e
## with the real runner)
test: install registry typecheck
	LLAMASUP_LLAMA_SERVER="$(RUNNER)" $(PYTHON) -m pytest $(PYTEST_ARGS)

## bench: time to first token and decode speed, llamasup vs llama-server directly (see bench/README.md)
bench: install
	LLAMASUP_LLAMA_SERVER="$(RUNNER)" $(PYTHON) bench/bench_proxy.py

clean:
	rm -rf $(VENV) vendor/llama.cpp .pytest_cache .mypy_cache
