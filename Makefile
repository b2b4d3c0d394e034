# stripe-reports — developer entry points. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(abspath $(VENV))/bin/python
LOCAL_AWS := $(PYTHON) scripts/local_aws.py run --
export STRIPE_REPORTS_PYTHON := $(PYTHON)

.PHONY: venv build test lint demo emulator local-aws clean

## venv: the Python tools of tests, demo and CI (moto[server], stripe, cfn-lint, jsonschema)
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

build:
	cargo build --workspace

## test: every test, against moto's server (started and stopped here) and the Stripe emulator
test: venv
	$(LOCAL_AWS) cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## demo: the whole pipeline locally (lands with issue #6)
demo:
	@echo "make demo: not yet — the local runner and demo land with issue #6" >&2
	@exit 1

## emulator: the Stripe emulator on 127.0.0.1:12111
emulator:
	cargo run -p stripe-emulator -- --listen 127.0.0.1:12111

## local-aws: moto's server with the ledger table, bucket and queues, until Ctrl-C
local-aws: venv
	$(PYTHON) scripts/local_aws.py serve

clean:
	cargo clean
	rm -rf $(VENV) .local
