# napari-histodiff: everything a new machine needs is set up by these targets.
#   make demo    create .venv if missing, install, run the demo headless
#   make test    the same plus test extras, then the whole suite (under Xvfb
#                when there is no display)
#   make napari  open napari with the plugin
#   make lint    ruff
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_FLAGS ?= -q

.PHONY: demo test napari lint install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	bash scripts/install-torch.sh $(PY)
	$(PIP) install $(PIP_FLAGS) -e ".[all]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -e ".[all,testing]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/histodiff demo --out demo-output --overwrite

test: install-test
	bash scripts/system-deps.sh
	@if [ -n "$${DISPLAY:-}" ]; then \
	  $(PY) -m pytest $(PYTEST_ARGS); \
	else \
	  xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest $(PYTEST_ARGS); \
	fi

napari: install
	$(VENV)/bin/napari -w napari-histodiff HistoDiff

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(VENV)/bin/histodiff bench

clean:
	rm -rf $(VENV) demo-output .pytest_cache
