#!/usr/bin/env bash
# Downloader benchmark: 10 MiB, 100 MiB and 1 GiB emulator reports streamed by
# the release downloader into moto's S3; per size MiB/s and the downloader
# process's peak RSS, next to curl of the same file to /dev/null (the
# loopback limit). Run it with `make bench-downloader` (moto is started and
# stopped around it). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AWS_ENDPOINT_URL:?run through make bench-downloader (starts moto)}"
KEY=sk_test_bench
PORT=${BENCH_EMULATOR_PORT:-12199}
BASE=http://127.0.0.1:$PORT
MIB=1048576
cargo build --release -q -p stripe-emulator --bin stripe-emulator
cargo build --release -q -p downloader --example download_one
TYPES='[{"id":"bench.10mib.1","file_size":'$((10*MIB))',"data_available_start":1700000000,"data_available_end":1800000000},
        {"id":"bench.100mib.1","file_size":'$((100*MIB))',"data_available_start":1700000000,"data_available_end":1800000000},
        {"id":"bench.1gib.1","file_size":'$((1024*MIB))',"data_available_start":1700000000,"data_available_end":1800000000}]'
./target/release/stripe-emulator --listen 127.0.0.1:$PORT --api-key $KEY --run-delay-ms 10 --report-types "$TYPES" >/dev/null 2>&1 &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf -u $KEY: $BASE/v1/reporting/report_types >/dev/null && break; sleep 0.1; done

export STRIPE_API_KEY=$KEY STRIPE_API_BASE=$BASE STRIPE_FILE_HOSTS=127.0.0.1
export RUNS_TABLE REPORTS_BUCKET REPORTS_PREFIX=bench/
echo "| size | downloader MiB/s | downloader peak RSS MiB | curl to /dev/null MiB/s | downloader / curl |"
echo "|---|---|---|---|---|"
for kind in bench.10mib.1 bench.100mib.1 bench.1gib.1; do
  run=$(curl -sf -u $KEY: $BASE/v1/reporting/report_runs -d report_type=$kind \
        -d 'parameters[interval_start]=1790000000' -d 'parameters[interval_end]=1790086400' \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  sleep 0.2
  url=$(curl -sf -u $KEY: $BASE/v1/reporting/report_runs/$run | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["url"])')
  curl_speed=$(curl -sf -u $KEY: -o /dev/null -w '%{speed_download}' "$url")
  result=$(./target/release/examples/download_one "$run")
  python3 - "$kind" "$curl_speed" "$result" <<'PY'
import json, sys
kind, curl_bps, result = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
curl = curl_bps / 1048576
size = {"bench.10mib.1": "10 MiB", "bench.100mib.1": "100 MiB", "bench.1gib.1": "1 GiB"}[kind]
print(f"| {size} | {result['mib_per_s']:.1f} | {result['peak_rss_mib']:.1f} | {curl:.1f} | {result['mib_per_s'] / curl:.2f} |")
PY
done
