# Two commands do everything on a fresh machine with Python 3.11+:  make demo  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install build demo test lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "The course needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)."; exit 1; }
	@command -v bwrap >/dev/null && command -v prlimit >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq bubblewrap util-linux >/dev/null; \
	  else echo "note: grading runs in a sandbox and needs bubblewrap: sudo apt-get install bubblewrap"; fi; }
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    { apt-get install -y -qq dataset-fashion-mnist || \
	      { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } >/dev/null 2>&1 || \
	    echo "note: apt-get could not install dataset-fashion-mnist, which milestone 1998 reads (or pass it --data)"; \
	  else echo "note: milestone 1998 reads Fashion-MNIST: sudo apt-get install dataset-fashion-mnist"; fi; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install tinytorch, the course tool and the dev tools

build: install  ## export tinytorch/ (course build-package, through nbdev) and release/ (nbgrader) from source/
	$(BIN)/course build-package
	$(BIN)/course release

demo: build  ## play a small class through release, autograde, feedback and report
	$(BIN)/course demo

test: install  ## the whole test suite
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: install  ## mypy --strict and ruff on the package, the course tool, the tests and every source notebook
	$(BIN)/mypy
	$(BIN)/ruff check tinytorch course tests milestones source
	$(BIN)/nbqa mypy source

clean:  ## remove generated grading folders (never submitted/ or the gradebook)
	rm -rf demo-class autograded feedback reports .pytest_cache
