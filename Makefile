# cfsx: `make demo` runs the pipeline on the demo config, `make test` runs the tests.
# Both set themselves up: a virtual environment in .venv, gfortran via apt-get if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# every file under cfsx/ (but compiled copies and caches), fortran/ and configs/: a change to any reinstalls
SOURCES := pyproject.toml meson.build LICENSE $(shell find cfsx fortran configs -type f -not -path '*/__pycache__/*' -not -name '*.so')
DEMO := demo-output
# TensorFlow's flavour (pyproject extras): the CUDA build where nvidia-smi finds a GPU, else the CPU build.
TF_EXTRA ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
# The real measured plane (shared beside the checkout; make demo REALDATA=path/to/ZrO2.nxs elsewhere).
REALDATA ?= ../shared/realdata/javelin-zro2-h0l/ZrO2.nxs
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test test-browser serve serve-screenshot bench models models-cfs2 models-cfs3 models-cfs4 models-pilot reproduce validate-correct interpretation-example generalisation multizone verdict targets-study fuzz mutation lint format clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	@bash tools/ensure-gfortran.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet meson-python meson ninja "numpy>=2.0"
	$(BIN)/python -m pip install --quiet --no-build-isolation ".[test,$(TF_EXTRA)]"
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/cfsx simulate demo -o $(DEMO)/demo.h5
	$(BIN)/cfsx info $(DEMO)/demo.h5
	$(BIN)/cfsx train $(DEMO)/demo.h5 -o $(DEMO)/demo.keras --config train-demo
	$(BIN)/cfsx evaluate $(DEMO)/demo.keras $(DEMO)/demo.h5 -o $(DEMO)/report --config train-demo
	@mkdir -p $(DEMO)/figures
	$(BIN)/cfsx simulate demo -o $(DEMO)/unseen.h5 --samples 4 --seed 7
	@if [ -f "$(REALDATA)" ]; then set -x; \
		$(BIN)/cfsx correct $(REALDATA) -o $(DEMO)/zro2.h5 --lattice F --set mask.edge=2 --reference $(DEMO)/demo.h5 \
			--figures $(DEMO)/figures && \
		$(BIN)/cfsx interpret $(DEMO)/unseen.h5 $(DEMO)/zro2.h5 -o $(DEMO)/interpretation --model $(DEMO)/demo.keras --refine; \
	else \
		echo "$(REALDATA) not found: the real plane is left out (make demo REALDATA=path/to/ZrO2.nxs)"; set -x; \
		$(BIN)/cfsx interpret $(DEMO)/unseen.h5 -o $(DEMO)/interpretation --model $(DEMO)/demo.keras --refine; \
	fi
	@echo "interpretation figures: $(DEMO)/interpretation/figures/"

test: $(STAMP)
	$(BIN)/python -m ruff check cfsx tests browser_tests benchmarks examples tools
	$(BIN)/pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_engine.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_training.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_interpretation.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_correction.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_volume.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_scaling.py --output docs/scaling.md
	OPENBLAS_NUM_THREADS=1 $(BIN)/python benchmarks/bench_simulate.py --output docs/performance.md --figures docs/performance
	$(BIN)/python benchmarks/bench_serve.py --requests 200 --replicates 0 --output docs/serve.md
	$(BIN)/python benchmarks/bench_serve.py --requests 200 --replicates 1 --output docs/serve.md --block serve-load-decoded

# cfsx correct on detector images made from simulations, against their clean truth (under a minute).
validate-correct: $(STAMP)
	$(BIN)/python benchmarks/validate_correction.py --images 12 --output docs/correction.md --figures docs/correction
	@mkdir -p $(DEMO)
	@if [ -f "$(REALDATA)" ]; then set -x; \
		$(BIN)/cfsx correct $(REALDATA) -o $(DEMO)/zro2.h5 --centre H=-2,L=4 --zones centre --set mask.edge=2 --figures docs/correction && \
		$(BIN)/python benchmarks/zones_zro2.py $(REALDATA) --output docs/correction.md --figures docs/correction; \
	else echo "$(REALDATA) not found: the real plane is left out"; fi

# docs/interpretation.md: cfsx interpret on synthetic detector images and on the real ZrO2 plane. About
# a minute with the CFS4 model of make reproduce (study-output/cfs4-small.keras); without it, the model
# is made first (5000 samples and 100 epochs: about 5 minutes).
interpretation-example: $(STAMP)
	$(BIN)/python benchmarks/interpretation_example.py

# The built-in general models (cfsx/builtin/, docs/models.md): data of every configs/general-*.yaml setting,
# their corrupted-and-corrected copies, training, the generalisation benchmark. Each model is skipped when
# installed from the same configs; a killed run continues where it stopped (run it again). Not in CI; the
# measured run times are in docs/models.md.
models: models-cfs4 models-cfs3 models-cfs2

models-cfs2 models-cfs3 models-cfs4: models-cfs%: $(STAMP)
	$(BIN)/python benchmarks/build_models.py --cfs $*

# docs/models.md's pilot: a wider model, longer training and more data, on the data of make models (about
# 30 minutes; not in CI).
models-pilot: $(STAMP)
	$(BIN)/python benchmarks/model_pilot.py

# The seed study: datasets, models, evaluations, docs/results.md (hours; not part of CI).
reproduce: $(STAMP)
	$(BIN)/python benchmarks/reproduce.py --work study-output --docs docs

# docs/generalisation.md: the CNNs and the least squares on the independent benchmark of
# Old (uniform) against new (realisable) CFS4 targets: a small CNN trained on each, scored on fresh data of both
# kinds and on the generalisation benchmark's clean images (docs/performance.md). Not in CI; minutes measured
# in the block it writes.
targets-study: $(STAMP)
	$(BIN)/python benchmarks/targets_study.py

# benchmarks/generalisation_data.py (6 groups x 200 cases, clean, all-origins, corrupted raw and corrected,
# detector renders). About 6 minutes with the data and models in bench-output/; the data (~10 minutes) and
# the reference CFS2 and CFS4 models (~15-20 minutes each on 2 cores) are made first when missing. Not in CI.
generalisation: $(STAMP)
	$(BIN)/python benchmarks/generalisation.py --data bench-output/generalisation-data --work bench-output/generalisation \
		--output docs/generalisation.md --figures docs/generalisation

# docs/generalisation.md's multizone block (issue 25): the benchmark's n64-l32-kall structures as 384 x 384 multi-zone
# detector renders (falloff, 1-10 counts per pixel, gaps; no Bragg peaks) corrected with geometry.zones=centre and
# =all, scored with the built-in models and the least squares against the clean image. 200 images: 43-81 s measured
# on 2 shared cores with the data present (the group's data are made first when missing: about 30 s). Not in CI.
multizone: $(STAMP)
	$(BIN)/python benchmarks/multizone.py --data bench-output/generalisation-data --work bench-output/multizone \
		--output docs/generalisation.md --figures docs/generalisation

# docs/interpretation.md's verdict block (issue 26): verdicts, ceilings and model-image fits on the generalisation
# benchmark's clean images (two groups, made first when missing), negative controls and the real ZrO2 plane. Not in CI.
verdict: $(STAMP)
	$(BIN)/python benchmarks/verdict.py --data bench-output/generalisation-data --output docs/interpretation.md

# Every command against 1000 bad inputs drawn by hypothesis (the same every run): one line and an exit
# code, no traceback, nothing partial, no input changed; then cfsx serve against about 1200 cases
# (Schemathesis from its OpenAPI document, and hostile ones). About 10 minutes; not in CI. Writes its sections
# of docs/reliability.md and fails when a case is not clean.
fuzz: $(STAMP)
	$(BIN)/python -c "import schemathesis" 2>/dev/null || $(BIN)/python -m pip install --quiet "schemathesis>=4.0"
	$(BIN)/python benchmarks/fuzz.py --output docs/reliability.md
	$(BIN)/python benchmarks/fuzz_serve.py --output docs/reliability.md

# Mutation testing of the server's store (cfsx/app/feedback.py) against tests/test_store.py with cosmic-ray:
# about 190 mutants, 10 minutes; not in CI. Prints the share that survived (docs/reliability.md).
mutation: $(STAMP)
	$(BIN)/python -c "import cosmic_ray" 2>/dev/null || $(BIN)/python -m pip install --quiet "cosmic-ray>=8.3"
	cp $(BIN)/../lib/python*/site-packages/cfsx/_engine*.so cfsx/
	ln -sfn ../configs cfsx/configs
	rm -f mutation-store.sqlite
	$(BIN)/cosmic-ray init tools/mutation-store.toml mutation-store.sqlite
	$(BIN)/cosmic-ray exec tools/mutation-store.toml mutation-store.sqlite
	$(BIN)/cr-report mutation-store.sqlite | tail -3

# The page of cfsx serve in headless Chromium (Selenium); installs chromium and chromium-driver when missing
# and root. Not part of make test; .ci/run runs it after make test.
test-browser: $(STAMP)
	@bash tools/ensure-chromium.sh
	$(BIN)/pytest -q -p no:cacheprovider browser_tests

# cfsx serve on the built-in models (http://127.0.0.1:8000/); Ctrl-C stops it.
serve: $(STAMP)
	$(BIN)/cfsx serve --store serve-store

# docs/serve.png from the browser test.
serve-screenshot: $(STAMP)
	@bash tools/ensure-chromium.sh
	CFSX_SCREENSHOT=$(CURDIR)/docs/serve.png $(BIN)/pytest -q -p no:cacheprovider browser_tests

lint: $(STAMP)
	$(BIN)/python -m ruff check cfsx tests browser_tests benchmarks examples tools
	$(BIN)/python -m ruff format --check cfsx tests browser_tests benchmarks examples tools

format: $(STAMP)
	$(BIN)/python -m ruff format cfsx tests browser_tests benchmarks examples tools
	$(BIN)/python -m ruff check --fix cfsx tests browser_tests benchmarks examples tools

clean:
	rm -rf $(VENV) build $(DEMO) bench-output
