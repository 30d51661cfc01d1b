# Every target is a one-liner; README.md documents them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PACKAGES := $(wildcard shared harness services/roster-api services/sso-gateway services/clever-sim services/demo-frontend)
STAMP  := $(VENV)/.installed
PKG_FILES := constraints.txt requirements-dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: install test lint fmt typecheck pytest run migrate bench clean check-isolation

install: $(STAMP)

$(STAMP): $(PKG_FILES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed" or 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $(STAMP)

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# one mypy run per tests tree: each is a `tests` package rooted at its package's folder, so the trees'
# conftest.py and helper modules keep their names and relative imports without clashing
typecheck: install
	$(BIN)/mypy $(addsuffix /src,$(PACKAGES)) conftest.py tests bench scripts
	for p in $(PACKAGES); do MYPYPATH=$$p $(BIN)/mypy $$p/tests || exit 1; done

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

run: install
	$(BIN)/python -m scripts.devrun

migrate: install
	$(BIN)/roster-api migrate

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

check-isolation:
	$(PYTHON) scripts/check_isolation.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts
