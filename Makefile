# The two commands of the README. Both create .venv and install the project on first use.
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
# the paper-scale profiles install the gpu extra (CUDA torch, vLLM); every other one the CPU build
EXTRA := $(if $(filter gpu gpu-qlora,$(PROFILE)),gpu,cpu)
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: book test render bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 (the `cpu` extra) takes the local CPU wheel, never a multi-GB CUDA build
	$(PY) -m pip install --quiet -e '.[$(EXTRA),dev]'
	touch $(STAMP)

book: $(STAMP)  ## execute every notebook on $(PROFILE), then render reports/book.html (other profiles: reports/book/$(PROFILE)/)
	$(PY) -m mlsearch_lib.book run --profile $(PROFILE)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)

# tests/test_book_render.py opens the rendered book in headless Chromium (Debian's package): installed when missing
test: $(STAMP)  ## the whole test suite (tiny profile, temporary output dirs)
	@sh scripts/ensure_chromium.sh
	$(PY) -m pytest -q

render: $(STAMP)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)
