#!/usr/bin/env python3
"""`make demo`: the whole pipeline on the local stack, then an audit.

Runs inside scripts/local_aws.py (moto's server with the table, bucket and
queues). Starts the Stripe emulator (three report types, a short run delay,
webhooks pointed at the runner) and `stripe-reports local`; the first
scheduler tick creates the runs, the emulator's signed webhooks go through
verification and the download queue, the downloader stores the files. Then
it prints the S3 keys, the ledger rows and the first lines of one CSV, stops
what it started, and exits 0 only if every expected report was stored with
the emulator's SHA-256.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_KEY = "sk_test_emulator"
WEBHOOK_SECRET = "whsec_stripe_reports_local"
EMULATOR = "127.0.0.1:12111"
RUNNER = "127.0.0.1:9000"
TYPES = ["balance.summary.1", "balance_change_from_activity.itemized.3", "payouts.itemized.3"]
LOOKBACK_DAYS = 3
DAY = 86400
TIMEOUT = 120


def log(text):
    print(f"demo: {text}", flush=True)


def wait_http(url, headers=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except Exception:
            time.sleep(0.2)
    return False


def emulator_get(path):
    request = urllib.request.Request(f"http://{EMULATOR}{path}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main():
    target = os.path.join(ROOT, "target", "debug")
    now = int(time.time())
    today = now - now % DAY
    types = [{"id": t, "data_available_start": today - 365 * DAY, "data_available_end": today,
              "file_size": size} for t, size in zip(TYPES, [48_000, 2_500_000, 9_000_000])]
    env = dict(os.environ)
    env.update({
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": f"http://{EMULATOR}",
        "STRIPE_FILE_HOSTS": "127.0.0.1",
        "REPORTS": json.dumps([{"report_type": t} for t in TYPES]),
        "LOOKBACK_DAYS": str(LOOKBACK_DAYS),
        "REPORTS_PREFIX": "stripe/",
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    os.makedirs(os.path.join(ROOT, ".local"), exist_ok=True)
    started = []
    try:
        emulator_log = open(os.path.join(ROOT, ".local", "demo-emulator.log"), "w")
        started.append(subprocess.Popen(
            [os.path.join(target, "stripe-emulator"), "--listen", EMULATOR, "--api-key", API_KEY,
             "--webhook-url", f"http://{RUNNER}/webhooks/stripe", "--webhook-secret", WEBHOOK_SECRET,
             "--run-delay-ms", "1500", "--report-types", json.dumps(types)],
            stdout=emulator_log, stderr=subprocess.STDOUT))
        if not wait_http(f"http://{EMULATOR}/_emulator/stats"):
            log("the Stripe emulator did not start (see .local/demo-emulator.log)")
            return 1
        log(f"Stripe emulator on {EMULATOR}; moto on {env['AWS_ENDPOINT_URL']}")
        runner_log = open(os.path.join(ROOT, ".local", "demo-runner.log"), "w")
        started.append(subprocess.Popen(
            [os.path.join(target, "stripe-reports"), "local", "--listen", RUNNER, "--schedule-every", "1h"],
            env=env, stdout=runner_log, stderr=subprocess.STDOUT))
        log(f"stripe-reports local on {RUNNER}: the first scheduler tick runs now")

        kwargs = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
        dynamodb = boto3.client("dynamodb", **kwargs)
        s3 = boto3.client("s3", **kwargs)
        expected = len(TYPES) * LOOKBACK_DAYS
        deadline = time.time() + TIMEOUT
        stored = []
        while time.time() < deadline:
            items = dynamodb.scan(TableName=env["RUNS_TABLE"], ConsistentRead=True)["Items"]
            runs = [i for i in items if i["pk"]["S"].startswith("run#")]
            stored = [r for r in runs if r["status"]["S"] == "stored"]
            if len(stored) >= expected:
                break
            if any(p.poll() is not None for p in started):
                log("a process stopped early (see .local/demo-*.log)")
                return 1
            time.sleep(1)
        elapsed = time.time() - (deadline - TIMEOUT)
        log(f"{len(stored)} of {expected} reports stored after {elapsed:.0f} s")

        print("\nS3 objects:")
        listed = s3.list_objects_v2(Bucket=env["REPORTS_BUCKET"], Prefix="stripe/").get("Contents", [])
        for obj in sorted(listed, key=lambda o: o["Key"]):
            print(f"  s3://{env['REPORTS_BUCKET']}/{obj['Key']}  ({obj['Size']} bytes)")
        print("\nLedger (run items):")
        for run in sorted(stored, key=lambda r: (r["report_type"]["S"], r["interval_start"]["N"])):
            print(f"  {run['pk']['S']:<34} {run['report_type']['S']:<42} {run['status']['S']:<7} "
                  f"{run['bytes']['N']:>8} bytes  sha256 {run['sha256']['S'][:16]}…")

        # The audit: every object's bytes hash to the ledger's SHA-256 and the emulator's.
        ok = len(stored) == expected
        emulator_runs = {r["id"]: r for r in emulator_get("/_emulator/runs")}
        for run in stored:
            run_id = run["pk"]["S"][4:]
            body = s3.get_object(Bucket=env["REPORTS_BUCKET"], Key=run["s3_key"]["S"])["Body"].read()
            digest = hashlib.sha256(body).hexdigest()
            file_id = emulator_runs[run_id]["result"]["id"]
            truth = emulator_get(f"/_emulator/files/{file_id}/sha256")
            if not (digest == run["sha256"]["S"] == truth["sha256"] and len(body) == truth["size"]):
                log(f"MISMATCH for {run_id}: object {digest}, ledger {run['sha256']['S']}, Stripe {truth['sha256']}")
                ok = False
        stats = emulator_get("/_emulator/stats")
        if stats["runs_created"] != expected:
            log(f"the emulator created {stats['runs_created']} runs for {expected} requests")
            ok = False
        if stored:
            first = sorted(stored, key=lambda r: r["s3_key"]["S"])[0]
            body = s3.get_object(Bucket=env["REPORTS_BUCKET"], Key=first["s3_key"]["S"])["Body"].read(400)
            print(f"\nFirst lines of {first['s3_key']['S']}:")
            for line in body.decode().splitlines()[:4]:
                print(f"  {line}")
        print()
        log(f"webhooks delivered: {stats['webhook_deliveries']}, runs created: {stats['runs_created']}")
        log("PASS: every report stored once with Stripe's SHA-256" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    sys.exit(main())
