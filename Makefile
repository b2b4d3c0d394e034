# stripe-reports — developer entry points. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(abspath $(VENV))/bin/python
LOCAL_AWS := $(PYTHON) scripts/local_aws.py run --
export STRIPE_REPORTS_PYTHON := $(PYTHON)

.PHONY: venv build test lint demo emulator local-aws bench-downloader bench-webhook clean

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

## demo: the whole pipeline locally: Stripe emulator + moto + `stripe-reports local`, then an audit
demo: venv
	cargo build -p cli -p stripe-emulator
	$(LOCAL_AWS) $(PYTHON) scripts/demo.py

## bench-downloader: MiB/s and peak RSS for 10 MiB, 100 MiB and 1 GiB reports (not part of make test)
bench-downloader: venv
	$(LOCAL_AWS) bash bench/downloader.sh

## bench-webhook: verify + parse per event, ours vs stripe-python construct_event
bench-webhook: venv
	cargo bench -p stripe-reports --bench webhook_verify

## emulator: the Stripe emulator on 127.0.0.1:12111
emulator:
	cargo run -p stripe-emulator -- --listen 127.0.0.1:12111

## local-aws: moto's server with the ledger table, bucket and queues, until Ctrl-C
local-aws: venv
	$(PYTHON) scripts/local_aws.py serve

clean:
	cargo clean
	rm -rf $(VENV) .local
