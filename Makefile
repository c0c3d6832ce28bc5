# attnlab developer entry points. `make demo` and `make test` build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnlab-installed
EXTRAS ?= finance,recsys,medical,speech,speech-quality,remote-sensing,video,dev,docs
SIM_DIR := data/finance/sim
PYTEST_ARGS ?= -n 2 --dist loadgroup --durations=20

.PHONY: demo demo-finance demo-medical demo-recsys demo-speech demo-video demo-remote-sensing test lint docs docs-serve format bench lock clean-demo help

help:
	@echo "make demo   - create .venv, install, then demo-finance and demo-medical"
	@echo "make demo-finance - simulate a LOBSTER-format sample, train + test TLOB on it"
	@echo "make demo-medical - train + test AGUNet on the embedded MSD hippocampus cases, predict NIfTI masks"
	@echo "make demo-recsys - simulate interaction sequences, train + test SASRec on them"
	@echo "make demo-speech - train a small Conv-TasNet on the embedded speech, print SI-SDRi on 5 Libri2Mix mixtures"
	@echo "make demo-video - arrow-of-time TimeSformer and a two-scene video DiT on the embedded clips, mp4 samples"
	@echo "make demo-remote-sensing - Statlog transformer + LWGANet cloud mask on embedded data, GeoTIFF prediction"
	@echo "make test   - lint (ruff, import layering), the docs site build (strict) and the test suite"
	@echo "make docs   - build the docs site into build/site (mkdocs build --strict)"
	@echo "make docs-serve - preview the docs site at http://127.0.0.1:8000 (mkdocs serve)"
	@echo "make bench  - CPU benchmarks (ratios against a reference measured in the same run)"
	@echo "make lock   - re-pin constraints.txt from the current .venv"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

$(SIM_DIR)/.done: data/finance/simulate_lob.py | $(STAMP)
	$(PY) data/finance/simulate_lob.py --out $(SIM_DIR) --days 4 --events 12000 --levels 10 --seed 0
	touch $@

demo: demo-finance demo-medical

demo-finance: $(STAMP) $(SIM_DIR)/.done
	$(BIN)/attnlab fit --config configs/finance/tlob_lobster.yaml
	$(BIN)/attnlab test --config configs/finance/tlob_lobster.yaml --ckpt_path best

MEDICAL_DEMO := configs/medical/agunet_hippocampus.yaml

demo-medical: $(STAMP)
	$(BIN)/attnlab fit --config $(MEDICAL_DEMO)
	$(BIN)/attnlab test --config $(MEDICAL_DEMO) --ckpt_path best
	$(BIN)/attnlab predict --config $(MEDICAL_DEMO) --ckpt_path best \
		--prediction_writer.output_dir runs/medical/agunet_hippocampus/predictions

VIDEO_CLS_DEMO := configs/video/smoke.yaml
VIDEO_GEN_DEMO := configs/video/demo_dit.yaml

demo-video: $(STAMP)
	$(BIN)/attnlab fit --config $(VIDEO_CLS_DEMO) --trainer.default_root_dir runs/video/demo_classifier
	$(BIN)/attnlab test --config $(VIDEO_CLS_DEMO) --trainer.default_root_dir runs/video/demo_classifier --ckpt_path best
	$(BIN)/attnlab fit --config $(VIDEO_GEN_DEMO)
	$(BIN)/attnlab predict --config $(VIDEO_GEN_DEMO) --ckpt_path best \
		--prediction_writer.output_dir runs/video/demo_dit/samples

SPEECH_DEMO := configs/speech/demo_cpu.yaml

demo-speech: $(STAMP)
	$(BIN)/attnlab fit --config $(SPEECH_DEMO)
	$(BIN)/attnlab test --config $(SPEECH_DEMO) --ckpt_path best
	$(BIN)/attnlab predict --config $(SPEECH_DEMO) --ckpt_path best \
		--prediction_writer.output_dir runs/speech/demo_cpu/predictions

RECSYS_SIM := data/recsys/sim/recsys-sim.inter

$(RECSYS_SIM): data/recsys/simulate_sequences.py | $(STAMP)
	$(PY) data/recsys/simulate_sequences.py --out data/recsys/sim --seed 0

demo-recsys: $(STAMP) $(RECSYS_SIM)
	$(BIN)/attnlab fit --config configs/recsys/sasrec_sim.yaml
	$(BIN)/attnlab test --config configs/recsys/sasrec_sim.yaml --ckpt_path best

RS_STATLOG := configs/remote_sensing/smoke.yaml
RS_CLOUD := configs/remote_sensing/lwganet_cloud_embedded.yaml

demo-remote-sensing: $(STAMP)
	$(BIN)/attnlab fit --config $(RS_STATLOG) --trainer.max_epochs=20 \
		--trainer.default_root_dir=runs/remote_sensing/demo_statlog
	$(BIN)/attnlab test --config $(RS_STATLOG) --ckpt_path best \
		--trainer.default_root_dir=runs/remote_sensing/demo_statlog
	$(BIN)/attnlab fit --config $(RS_CLOUD)
	$(BIN)/attnlab test --config $(RS_CLOUD) --ckpt_path best
	$(BIN)/attnlab predict --config $(RS_CLOUD) --ckpt_path best \
		--prediction_writer.output_dir runs/remote_sensing/lwganet_cloud_embedded/predictions

# pytest exits 5 when it collects no test: that is a failure here, never a silent pass.
test: $(STAMP) lint docs
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The site goes to build/site (git-ignored); a broken link, anchor or page fails the build. No --quiet:
# it hides the warnings from the strict check too, and the build then passes whatever they say.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(PY) -m benchmarks.attention
	$(PY) -m benchmarks.attention_mha
	$(PY) -m benchmarks.tlob_throughput
	$(PY) -m benchmarks.medical_throughput

lock: $(STAMP)
	@{ echo "# The tested set: every package 'make' installs, pinned. Regenerate with 'make lock' after an upgrade."; \
	  echo "# pyproject.toml keeps ranges; this file pins what CI and 'make demo' run."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^attnlab'; } > constraints.txt

clean-demo:
	rm -rf $(SIM_DIR) runs/finance/tlob_lobster runs/medical/agunet_hippocampus
