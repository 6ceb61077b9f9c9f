# Set-up commands for a fresh machine:  make demo  |  make test
# Each creates .venv if missing and installs the project with pinned dependencies
# (torch==2.13.0 first, from constraints.txt, so no CUDA build is pulled), then runs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.audiobench-installed
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

ESC10  ?= ../shared/data/ESC-10

.PHONY: install demo demo-zs demo-ast demo-esc10 demo-vad demo-planted demo-multilabel demo-bd demo-td test test-fast latex chromium lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(BIN)/python -m audiobench.install_fix
	touch $@

demo: $(STAMP)
	$(BIN)/audiobench run suites/quickstart.yaml

demo-zs: $(STAMP)  # the zero-shot track (LMAC-ZS) on the embedded data
	$(BIN)/audiobench run suites/synth_zs.yaml

demo-ast: $(STAMP)  # a small AST (shipped): gradient, CAM, occlusion, L-MAC and attention rows, about 10 minutes
	$(BIN)/audiobench run suites/quickstart_ast.yaml

demo-multilabel: $(STAMP)  # multi-label: a sigmoid CNN14 (shipped), every detected label explained with its own ground truth, about 6 minutes
	$(BIN)/audiobench run suites/synth_multilabel.yaml

demo-bd: $(STAMP)  # the L2I journal's by-design track (g shipped): BD w/ ATT, its mean-reduced variant, PostHoc, BD-NoPred, Table VIII, about 30 minutes
	$(BIN)/audiobench run suites/synth_multilabel_bd.yaml -o results/synth_multilabel_bd
	$(BIN)/audiobench run suites/synth_multilabel_bd.yaml --set model.loss_reduction=recipe -o results/synth_multilabel_bd_recipe
	$(BIN)/audiobench run suites/synth_multilabel_bd.yaml --set model.prediction=posthoc -o results/synth_multilabel_bd_posthoc
	$(BIN)/audiobench run suites/synth_multilabel_bd.yaml --set model.prediction=g -o results/synth_multilabel_bd_nopred
	$(BIN)/python -m audiobench.tables.by_design results/synth_multilabel_bd results/synth_multilabel_bd_recipe results/synth_multilabel_bd_posthoc results/synth_multilabel_bd_nopred results/synth_multilabel -o results/synth_multilabel_bd/table_viii.md

demo-td: $(STAMP)  # LMAC-TD beside L-MAC (as written and re-analysed) on the quickstart's data and classifier (shipped)
	$(BIN)/audiobench run suites/quickstart_td.yaml

demo-planted: $(STAMP)  # a known answer: every method against a planted cue, and which metric to trust (issue 22), about 15 minutes
	$(BIN)/audiobench run suites/planted.yaml
	$(BIN)/audiobench run suites/planted_handbuilt.yaml
	$(BIN)/audiobench run suites/planted_control.yaml

demo-esc10: $(STAMP)  # the L-MAC protocol on real audio: ESC-10 (make demo-esc10 ESC10=/data/ESC-10)
	$(BIN)/audiobench run suites/esc10.yaml --set dataset.root=$(abspath $(ESC10))

demo-vad: $(STAMP)  # a pretrained detector from a PyPI wheel (Silero VAD) explained on ESC-10 scenes with a talker, about 1 minute
	$(BIN)/audiobench run suites/esc10_vad.yaml --set dataset.root=$(abspath $(ESC10))

test: $(STAMP) latex chromium  # everything, markers included (slow, browser, cluster, latex, pip); then the tests that train again at one thread
	$(BIN)/python -m pytest -q -rs
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -rs -m "slow and not browser and not cluster and not pip"

test-fast: $(STAMP)  # the quick subset while you work (no training, no browser, no cluster, no LaTeX; README: its time)
	$(BIN)/python -m pytest -q -rs -m "not slow and not browser and not cluster and not latex and not pip"

latex:  # pdflatex for the LaTeX compile test: installed with apt-get when missing and root
	@sh tools/ensure_latex.sh

chromium:  # headless Chromium + chromedriver for the report and listening tests: apt-get when missing and root
	@sh tools/ensure_chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python benchmarks/nmf_cost.py

clean:
	rm -rf $(VENV) build *.egg-info
