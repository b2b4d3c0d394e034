# stripe-reports — developer entry points. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(abspath $(VENV))/bin/python
LOCAL_AWS := $(PYTHON) scripts/local_aws.py run --
export STRIPE_REPORTS_PYTHON := $(PYTHON)

.PHONY: venv tools-venv bench-tools bench-converter deploy-checks deploy-lint sam-build build test lint demo reliability fuzz bench emulator local-aws clean

## venv: the Python tools of tests, demo and CI (moto[server], stripe, cfn-lint, jsonschema)
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

## tools-venv: SAM CLI, checkov, cargo-lambda and zig (for deploy-checks)
tools-venv: .venv-tools/.installed
.venv-tools/.installed: requirements-tools.txt
	python3 -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --upgrade pip
	.venv-tools/bin/pip install --quiet -r requirements-tools.txt
	touch $@

## deploy-checks: IAM against the code, alarms and charts against the metrics, the EventBridge
## rules against sample events (moto), cfn-lint of every rendering of the conditions and of the
## template, sam validate --lint, checkov, and sam build of the five bootstrap binaries. SAM_ARCH
## defaults to samconfig.toml's Architecture (the one place it is set); CI passes SAM_ARCH=x86_64
## (no aarch64-unknown-linux-gnu download there).
SAM_ARCH ?= $(shell sed -n 's/^parameter_overrides = .*Architecture=\([a-z0-9_]*\).*/\1/p' samconfig.toml)
deploy-checks: deploy-lint sam-build

## deploy-lint: deploy-checks without sam build (seconds to a few minutes)
deploy-lint: venv tools-venv
	$(PYTHON) scripts/check_iam.py
	$(PYTHON) scripts/check_metrics.py
	$(PYTHON) scripts/check_event_rule.py
	$(PYTHON) scripts/lint_renderings.py
	$(VENV)/bin/cfn-lint template.yaml
	PATH="$(abspath .venv-tools)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam validate --lint --region us-east-1
	.venv-tools/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

## sam-build: sam build of the five bootstrap binaries (release builds: the slow part)
sam-build: tools-venv
	@# A partner event source given, so the build covers the eventbridge function too.
	PATH="$(abspath .venv-tools)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam build --no-cached \
		--parameter-overrides Architecture=$(SAM_ARCH) StripeEventSources=aws.partner/stripe.com/ed_build_check \
		--build-dir .aws-sam/build-$(SAM_ARCH)
	@for f in Scheduler Webhook EventBridge Downloader Converter; do \
		test -x .aws-sam/build-$(SAM_ARCH)/$${f}Function/bootstrap || { echo "no bootstrap for $$f" >&2; exit 1; }; \
		ls -l .aws-sam/build-$(SAM_ARCH)/$${f}Function/bootstrap; done

build:
	cargo build --workspace

## test: every test, against moto's server (started and stopped here) and the Stripe emulator
test: venv
	$(LOCAL_AWS) cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p stripe-reports --no-default-features -- -D warnings

## demo: the whole pipeline locally: Stripe emulator + moto + `stripe-reports local`, then an audit;
## EVENTS=eventbridge sends Stripe's events through the EventBridge path instead of webhooks (both: each way)
demo: venv
	cargo build -p cli -p stripe-emulator
	$(LOCAL_AWS) $(PYTHON) scripts/demo.py $(if $(EVENTS),--events $(EVENTS))

## reliability: the fault scenarios end to end on the local stack (moto, emulator,
## `stripe-reports local`), each with the same audit, then a scan of every log for secrets
reliability: venv
	cargo build -p cli -p stripe-emulator
	$(PYTHON) scripts/reliability.py $(if $(ONLY),--only $(ONLY))

## fuzz: libFuzzer on the signature-header parser and the webhook event parser/router,
## FUZZ_SECONDS per target (CI: 60). Stable Rust: cargo fuzz with --sanitizer none, overflow and debug checks on.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= signature_header webhook_event
CARGO_FUZZ_VERSION := 0.13.2
fuzz:
	@cargo fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ_VERSION)" || cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	cd fuzz && cargo fuzz build --sanitizer none --debug-assertions
	@# The targets side by side (libFuzzer uses one core each); each one's
	@# summary printed when all are done, and any crash fails the run.
	@set -o pipefail; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		( (cd fuzz && cargo fuzz run --sanitizer none --debug-assertions $$target corpus/$$target seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 2>&1 | \
			grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+== ERROR|thread .* panicked|SUMMARY)") \
			> fuzz/$$target.log 2>&1; echo $$? > fuzz/$$target.status ) & \
	done; wait; failed=0; for target in $(FUZZ_TARGETS); do \
		echo "fuzz: $$target"; cat fuzz/$$target.log; \
		if [ "$$(cat fuzz/$$target.status)" != 0 ]; then \
			echo "fuzz: $$target FAILED (crash input in fuzz/artifacts/$$target)"; failed=1; fi; \
		rm -f fuzz/$$target.log fuzz/$$target.status; \
	done; exit $$failed

## bench: every benchmark side by side with its baselines; writes bench/RESULTS.md (not part of make test);
## ONLY=fanout (or downloader, webhook, cold-start, tables, comma-separated) replaces only those sections
bench: venv bench-tools
	cargo build --release -p stripe-emulator -p scheduler -p webhook -p eventbridge -p downloader -p converter -p cli -p hello-lambda
	cargo build --release -p downloader --example download_one
	cargo build --release -p tables --example convert_rss
	$(PYTHON) bench/run.py $(if $(ONLY),--only $(ONLY))

## bench-converter: the converter function end to end (S3 → Parquet → S3, Glue, ledger) for
## 10 MiB, 100 MiB and 1 GiB CSVs: its process's peak RSS, i.e. the memory the function needs
bench-converter: venv
	cargo build --release -p cli
	cargo build --release -p tables --example convert_rss
	$(LOCAL_AWS) $(PYTHON) bench/converter_memory.py

## bench-tools: the AWS CLI (PyPI) in .venv-bench, s3s-fs (crates.io: a Rust S3 server over a
## folder, the downloader benchmark's fast local S3) in .local/s3s-fs, and stripe-node when Node.js is present
AWSCLI_VERSION := 1.46.3
S3S_FS_VERSION := 0.14.1
STRIPE_NODE_VERSION := 23.1.0
bench-tools: .venv-bench/.installed .local/s3s-fs/bin/s3s-fs
.local/s3s-fs/bin/s3s-fs:
	cargo install --quiet s3s-fs --version $(S3S_FS_VERSION) --features binary --root .local/s3s-fs
.venv-bench/.installed:
	python3 -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --upgrade pip
	.venv-bench/bin/pip install --quiet awscli==$(AWSCLI_VERSION)
	@if command -v npm >/dev/null; then \
		mkdir -p bench/.node && cd bench/.node && \
		npm install --silent --no-audit --no-fund --no-save stripe@$(STRIPE_NODE_VERSION) >/dev/null; \
	else echo "bench: no npm; the webhook table will have no Node column"; fi
	touch $@

## emulator: the Stripe emulator on 127.0.0.1:12111
emulator:
	cargo run -p stripe-emulator -- --listen 127.0.0.1:12111

## local-aws: moto's server with the ledger table, bucket and queues, until Ctrl-C
local-aws: venv
	$(PYTHON) scripts/local_aws.py serve

clean:
	cargo clean
	rm -rf $(VENV) .venv-tools .venv-bench bench/.node .local .aws-sam
