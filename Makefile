# The two commands of the README:
#   make demo   set up (first run only) and run the main job on the embedded defaults
#   make test   set up (first run only) and run the test suite
# Set-up is idempotent: a stamp keyed by the lock file makes a second run skip it.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell cat requirements.lock setup.cfg setup.py 2>/dev/null | cksum | cut -d' ' -f1)
export PYOPENGL_PLATFORM ?= osmesa

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): requirements.lock setup.cfg setup.py
	bash tools/setup_system.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.stamp-*
	touch $@

demo: setup
	$(BIN)/python -m amg.generate

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
