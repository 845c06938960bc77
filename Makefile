# clamp-index: every target does its own set-up on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLAMP  := $(VENV)/bin/clamp
MODEL  ?= build/model
CORPUS  = $(shell $(PY) -c 'import music21, pathlib; print(pathlib.Path(music21.__file__).parent / "corpus")')

.PHONY: setup test demo export lint bench model-choices clean

setup: $(VENV)/.installed

# torch==2.13.0 (CPU) first: an unpinned torch would pull the CUDA stack.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[export,index,train,formats,ray,hub,analysis,dev]'
	@# Headless Chromium for the web page's browser test (Debian packages; the test skips without them).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium chromium-driver) || echo "no chromium: browser tests will skip"
	touch $@

test: setup
	$(PY) -m pytest -q

export: setup
	$(CLAMP) export --model default --out $(MODEL)

demo: export
	$(CLAMP) embed "$(CORPUS)/**/*.abc" "$(CORPUS)/bach/*.mxl" "$(CORPUS)/monteverdi/*.mxl" --model $(MODEL) --out build/shards
	$(CLAMP) index build build/shards --out build/index
	$(CLAMP) search "a lively jig in D major" --index build/index -k 5
	$(CLAMP) search "a slow air in E minor" --index build/index -k 5
	$(CLAMP) search "a German folk song" --index build/index -k 5 --filter 'meter = 3/4 and collection = essenFolksong'
	$(CLAMP) search "a slow air" --index build/index -k 5 --filter '(rhythm = air or meter = 3/4) and key in (Em, Am)'
	$(CLAMP) search "a Christmas carol" --index build/index -k 5 --mode vector
	$(CLAMP) search "a Christmas carol" --index build/index -k 5
	$(CLAMP) search "a chorale by Bach in a minor key" --index build/index -k 5 --mode vector
	$(CLAMP) search "a Renaissance madrigal for five voices" --index build/index -k 5 --mode vector
	$(CLAMP) index facets build/index --fields key,meter,rhythm,collection --top 5
	$(CLAMP) similar "$(CORPUS)/ryansMammoth/SleepyMaggieReel.abc" --index build/index -k 5
	$(CLAMP) classify "$(CORPUS)/ryansMammoth/SleepyMaggieReel.abc" --model $(MODEL) --label-set tune-type
	$(CLAMP) classify "$(CORPUS)/bach/bwv66.6.mxl" --model $(MODEL) --label-set composer
	@echo
	@echo "Serve it:  $(CLAMP) serve --index build/index   (then open http://127.0.0.1:8000/ — API docs at /docs)"

lint: setup
	$(VENV)/bin/ruff check runtime exporter indexer training tests bench

# Every table of BENCHMARKS.md, in order (~50 min on 2 cores; needs the demo's shards and index).
bench: demo
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench_patching.py
	$(PY) bench/bench_embed.py --tunes 1000
	$(PY) bench/bench_pipeline.py --checkpoint default --model $(MODEL) --scales 1 10 --precisions fp32 int8
	$(PY) bench/bench_serving.py --mix search:1 --mix search-distinct:1 --requests 3000 --sequential 200
	$(PY) bench/bench_serving.py --mix similar:1 --mix classify:1 --requests 2000 --sequential 200
	$(PY) bench/bench_serving.py --mix search:1 --requests 10000 --precision int8
	$(PY) bench/bench_index.py --model $(MODEL) --base-shards build/shards --sizes 100000,1000000 --noise 1 --keep
	$(PY) bench/bench_serving.py --index build/bench/n1000000/index --mix search:1 --requests 2000
	$(PY) bench/bench_query.py --index build/index --index build/bench/n1000000/index --runs 3
	$(PY) bench/bench_ann.py --base-shards build/shards --sizes 100000 --noise 1
	$(PY) bench/bench_update.py --base-shards build/shards --model $(MODEL) --sizes 100000,1000000 --noise 1
	$(PY) bench/bench_formats.py
	$(PY) bench/bench_search_quality.py --index build/index

# The model-card comparison of model choices: one short run per choice at equal budget (folk tunes only,
# 2 epochs, seed 0; the base again with seed 1 for the noise), each measured on music none of them
# trained on, then all side by side (~1.5 h on 2 cores; a finished run is not run again).
CHOICES      = build/choices
CHOICE_RUNS  = base masked-patch-pretrained music-2-layers text-top-layer-tuned no-music-music base-seed-1
CHOICE_FLAGS_masked-patch-pretrained = --pretrain-epochs 1
CHOICE_FLAGS_music-2-layers          = --music-layers 2
CHOICE_FLAGS_text-top-layer-tuned    = --text-tuned-layers 1
CHOICE_FLAGS_no-music-music          = --music-music-weight 0
CHOICE_FLAGS_base-seed-1             = --seed 1  # how far two seeds of one choice differ
$(CHOICES)/%/metrics.json:
	$(CLAMP) train --no-eval --no-classical --epochs 2 --out $(CHOICES)/$* $(CHOICE_FLAGS_$*)
	$(CLAMP) eval --checkpoint $(CHOICES)/$* --write > /dev/null
model-choices: setup $(foreach run,$(CHOICE_RUNS),$(CHOICES)/$(run)/metrics.json)
	$(PY) -c 'import json, sys; from training.evaluate import markdown_table; \
	  print(markdown_table([json.load(open(f)) for f in sys.argv[1:]]))' $(filter %.json,$^) | tee $(CHOICES)/table.md

clean:
	rm -rf build
