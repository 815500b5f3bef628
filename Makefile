# The two commands of the README. Both create .venv and install the project on first use.
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test render bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 (the `cpu` extra) takes the local CPU wheel, never a multi-GB CUDA build
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	touch $(STAMP)

book: $(STAMP)  ## execute every notebook on $(PROFILE), then render reports/book/$(PROFILE)/
	$(PY) -m mlsearch_lib.book run --profile $(PROFILE)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)

# tests/test_book_render.py opens the rendered book in headless Chromium (Debian's package): installed when missing
test: $(STAMP)  ## the whole test suite (tiny profile, temporary output dirs)
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || [ -n "$$MLSEARCH_CHROMIUM" ] \
	  || [ "$$MLSEARCH_NO_BROWSER" = 1 ] || { echo "installing chromium (apt-get) for tests/test_book_render.py"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  $$SUDO sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium' \
	  >/dev/null 2>&1 || echo "could not install chromium: tests/test_book_render.py will fail (MLSEARCH_NO_BROWSER=1 skips it)"; }
	$(PY) -m pytest -q

render: $(STAMP)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)
