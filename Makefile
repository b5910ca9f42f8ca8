# Two entry points, both idempotent: `make demo` (the main job) and `make test`.
# Everything lives in a local virtualenv (.venv); torch 2.13.0 is installed first so that pip
# keeps the CPU wheel instead of pulling a multi-GB CUDA build for `torch>=2.1`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medloss-installed

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml setup.py src/medloss/_kernels.c src/medloss/_kernels_impl.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medloss demo --out medloss-demo --force

# the whole suite (with the compiled kernels, which must have built), then the segmentation
# losses again on their PyTorch path (what runs on GPUs and where no C compiler was found)
test: $(STAMP)
	MEDLOSS_REQUIRE_NATIVE=1 $(PY) -m pytest -q
	MEDLOSS_NATIVE=0 $(PY) -m pytest -q tests/test_segmentation_losses.py tests/test_memory_layouts.py

# the documentation site (mkdocs-material + mkdocstrings): API reference from the docstrings, the guides
docs: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	@# no function graded worse than C by radon's cyclomatic complexity
	@out="$$($(VENV)/bin/radon cc -n D -s src/medloss)"; if [ -n "$$out" ]; then \
		echo "functions graded worse than C (radon cc):"; echo "$$out"; exit 1; fi

bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache src/medloss/*.so
