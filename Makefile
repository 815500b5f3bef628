# The two commands of the README. Both create .venv and install the project on first use.
PYTHON ?= python3
PROFILE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
# the paper-scale profiles install the gpu extra (CUDA torch, vLLM); every other one the CPU build
EXTRA := $(if $(filter gpu gpu-qlora,$(PROFILE)),gpu,cpu)
STAMP := $(VENV)/.installed-$(EXTRA)
# Where pip finds the CPU build of torch off this machine: PyPI's Linux torch wheel is the CUDA
# build (GBs of CUDA libraries), PyTorch's CPU index has the CPU one. Only torch is read from it
# (installed first, alone), so no other package can come from that index. This machine's pip
# config finds the local wheel (find-links /opt/wheels) and pip skips an unreachable index with a
# warning (a few retries, ~10 s, once); `make TORCH_INDEX=` leaves the index out altogether.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# pyproject's `cpu` extra pins the same (tests/test_score_cli.py checks that the two agree)
TORCH_CPU := torch==2.13.0
# `make book DRAFT=1`: run and publish even from a dirty tree, marked as a draft in run.json and the book
DRAFT ?=

.PHONY: book test render bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the `cpu` extra: torch==2.13.0's CPU build (the local wheel here, TORCH_INDEX elsewhere), never a multi-GB CUDA one
	$(if $(filter cpu,$(EXTRA)),$(PY) -m pip install --quiet --no-deps $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) '$(TORCH_CPU)')
	$(PY) -m pip install --quiet -e '.[$(EXTRA),dev]'
	touch $(STAMP)

book: $(STAMP)  ## execute every notebook on $(PROFILE), then render reports/book.html (other profiles: reports/book/$(PROFILE)/)
	$(PY) -m mlsearch_lib.book run --profile $(PROFILE) $(if $(DRAFT),--draft)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)

# tests/test_book_render.py opens the rendered book in headless Chromium (Debian's package): installed when missing
test: $(STAMP)  ## the whole test suite (tiny profile, temporary output dirs)
	@sh scripts/ensure_chromium.sh
	$(PY) -m pytest -q

render: $(STAMP)
	$(PY) -m mlsearch_lib.book render --profile $(PROFILE)
