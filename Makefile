# Two commands on a fresh machine: `make run` and `make test`.
# --server.address is set so Streamlit does not look up its external IP (no network at run time).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
STAMP := $(VENV)/.installed
# Test processes (pytest-xdist, one file per process at a time so a module's server is shared): 2 halves the
# suite's time on 2 cores; more processes than cores only make the browser tests' servers wait.
TEST_PROCS ?= 2

export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: run test install lint bench chromium dft-build-deps

# Reinstall only when requirements.txt changes. GPAW compiles against these system packages.
$(STAMP): requirements.txt
	$(MAKE) dft-build-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@echo "battgai: open http://localhost:$(PORT)"
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --server.address 0.0.0.0

# Headers GPAW's C extension builds against (pip builds it from source): libxc, BLAS, MPI.
dft-build-deps:
	@dpkg -s libxc-dev libopenblas-dev libopenmpi-dev >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libxc-dev libopenblas-dev libopenmpi-dev; }

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

test: $(STAMP) chromium
	$(PY) -m ruff check .
	$(PY) -m pytest tests -n $(TEST_PROCS) --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) -m battgai.bench materials
	$(PY) -m battgai.bench microstructure
	$(PY) -m battgai.bench health
