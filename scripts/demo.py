#!/usr/bin/env python3
"""`make demo`: the whole pipeline on the local stack for two Stripe
accounts, then an audit per account.

Runs inside scripts/local_aws.py (moto's server with the table, bucket and
queues). Starts the Stripe emulator serving two accounts (each its own API
key, webhook signing secret and EventBridge event destination; three report
types, a short run delay, events sent to the runner) and `stripe-reports
local` configured with both (`STRIPE_ACCOUNTS`); one report spec applies to
the first account only. The first scheduler tick creates every account's
runs with that account's key; Stripe's events reach the runner by
`--events`:

  webhook      (default) signed webhooks, verified (the secret that verifies
               a delivery says whose it is);
  eventbridge  no webhook: each event in Amazon EventBridge's shape, from the
               account's event destination, POSTed to the runner's stand-in
               for the EventBridge rule, put on the event queue
               (EVENTBRIDGE_QUEUE_URL) and handled by the eventbridge
               function (the destination says whose it is);
  both         each event both ways (handled once: the same claim).

Either way the events go through the download queue, and the downloader
stores each file under its account's `account=` segment. Then it
prints the S3 keys, the ledger rows, `stripe-reports status` and the first
lines of one CSV, stops
what it started, and exits 0 only if, for each account, every expected
report was stored exactly once under `account=<acct>/`, byte-identical to
the emulator's file, nothing of one account is under the other's, the
events came the chosen way(s) and the event queue and its DLQ are empty.

The emulator and the runner listen on DEMO_EMULATOR (127.0.0.1:12111) and
DEMO_RUNNER (127.0.0.1:9000); a port already taken stops the demo at once
(it would otherwise talk to someone else's emulator).
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import boto3

import local_aws
from demo_sql import TablesDiffer, check_tables, download_reports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR = os.environ.get("DEMO_EMULATOR", "127.0.0.1:12111")
RUNNER = os.environ.get("DEMO_RUNNER", "127.0.0.1:9000")
# Two accounts of one company (an entity per country): id, API key, webhook secret.
ACCOUNTS = [
    ("acct_1DemoCompanyUS00", "sk_test_demo_us_entity", "whsec_demo_us_entity"),
    ("acct_1DemoCompanyEU00", "sk_test_demo_eu_entity", "whsec_demo_eu_entity"),
]
# Each account's Stripe event destination sending to Amazon EventBridge
# (its events' source is `aws.partner/stripe.com/<destination>`).
DESTINATIONS = {account: "ed_test_61Demo" + account[len("acct_1DemoCompany"):] for account, _, _ in ACCOUNTS}
TYPES = ["balance.summary.1", "balance_change_from_activity.itemized.3", "payouts.itemized.3"]
# payouts.itemized.3 only for the first account (a report spec's `account`).
SPECS = [{"report_type": TYPES[0]}, {"report_type": TYPES[1]},
         {"report_type": TYPES[2], "account": ACCOUNTS[0][0]}]
LOOKBACK_DAYS = 3
PREFIX = "stripe/"
DAY = 86400
TIMEOUT = 180


def log(text):
    print(f"demo: {text}", flush=True)


def port_taken(address):
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


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


def specs_of(account):
    return [s["report_type"] for s in SPECS if s.get("account") in (None, account)]


def planned(today):
    """(account, report type, interval start) of every report expected."""
    return {(account, kind, today - k * DAY) for account, _, _ in ACCOUNTS
            for kind in specs_of(account) for k in range(1, LOOKBACK_DAYS + 1)}


def audit(s3, bucket, runs, today):
    """The problems found, per account; none means every report of each
    account is stored exactly once under its own `account=` segment, with
    the emulator's bytes."""
    problems = []
    ids = {account for account, _, _ in ACCOUNTS}
    stored = [r for r in runs if r["status"]["S"] == "stored"]
    by_report = {}
    for run in stored:
        key = (run.get("account", {}).get("S"), run["report_type"]["S"], int(run["interval_start"]["N"]))
        by_report.setdefault(key, []).append(run)
    expected = planned(today)
    for key in sorted(expected):
        if len(by_report.get(key, [])) != 1:
            problems.append(f"{key[0]} {key[1]} {time.strftime('%Y-%m-%d', time.gmtime(key[2]))}: "
                            f"{len(by_report.get(key, []))} stored runs")
    for key in sorted(set(by_report) - expected, key=str):
        problems.append(f"stored runs nobody planned: {key}")

    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        objects += page.get("Contents", [])
    # Table files (`<prefix>tables/…`) are checked by the SQL step below.
    outside = [o["Key"] for o in objects
               if not o["Key"].startswith(f"{PREFIX}tables/")
               and not any(o["Key"].startswith(f"{PREFIX}account={a}/report_type=") for a in ids)]
    if outside:
        problems.append(f"objects outside every account's segment: {outside}")
    stats = emulator_get("/_emulator/stats")
    if stats["runs_created"] != len(expected):
        problems.append(f"the emulator created {stats['runs_created']} runs for {len(expected)} reports")

    for account, _, _ in ACCOUNTS:
        emulator_runs = {r["id"]: r for r in emulator_get(f"/_emulator/runs?account={urllib.parse.quote(account)}")}
        wanted = len([k for k in expected if k[0] == account])
        if len(emulator_runs) != wanted:
            problems.append(f"{account}: {len(emulator_runs)} runs at the emulator for {wanted} reports")
        segment = f"{PREFIX}account={account}/"
        under = {o["Key"]: o for o in objects if o["Key"].startswith(segment)}
        # Every object under the account's segment is one of its runs: nothing of another account.
        for key in under:
            run_id = key.rsplit("/", 1)[-1][:-len(".csv")]
            if run_id not in emulator_runs:
                problems.append(f"{account}: {key} is not a run of this account")
        # Every run of the account: stored once, under its segment, with the emulator's bytes.
        mine = [r for r in stored if r["pk"]["S"][len("run#"):] in emulator_runs]
        if len(mine) != len(emulator_runs) or len(under) != len(emulator_runs):
            problems.append(f"{account}: {len(emulator_runs)} runs, {len(mine)} stored in the ledger, "
                            f"{len(under)} objects under {segment}")
        for run in mine:
            run_id = run["pk"]["S"][len("run#"):]
            key = run["s3_key"]["S"]
            if run.get("account", {}).get("S") != account or not key.startswith(segment):
                problems.append(f"{account}: {run_id} recorded for {run.get('account')} at {key}")
                continue
            obj = s3.get_object(Bucket=bucket, Key=key)
            body = obj["Body"].read()
            digest = hashlib.sha256(body).hexdigest()
            truth = emulator_get(f"/_emulator/files/{emulator_runs[run_id]['result']['id']}/sha256")
            if not (digest == run["sha256"]["S"] == truth["sha256"] and len(body) == truth["size"]):
                problems.append(f"{account}: MISMATCH for {run_id}: object {digest}, ledger {run['sha256']['S']}, "
                                f"Stripe {truth['sha256']}")
            if obj.get("Metadata", {}).get("account") != account:
                problems.append(f"{account}: {key} has metadata account={obj.get('Metadata', {}).get('account')}")
    return problems


def events_audit(events, env):
    """The events came the chosen way(s) only, every delivery accepted, and
    nothing is left on the event queue or its DLQ."""
    problems = []
    stats = emulator_get("/_emulator/stats")
    for way in ("webhook", "eventbridge"):
        wanted = events in (way, "both")
        if wanted != (stats[f"{way}_deliveries"] > 0):
            problems.append(f"{stats[f'{way}_deliveries']} {way} deliveries with --events {events}")
    # The runner's EventBridge target answers 200 once the event is on the queue.
    if stats["eventbridge_failures"]:
        problems.append(f"{stats['eventbridge_failures']} EventBridge deliveries not answered 2xx")
    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    queues = [env[name] for name in ("EVENTBRIDGE_QUEUE_URL", "EVENTBRIDGE_QUEUE_DLQ_URL") if env.get(name)]

    def left():
        counts = {}
        for url in queues:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            counts[url] = sum(int(v) for v in attributes.values())
        return {url: n for url, n in counts.items() if n}
    # With both ways, an EventBridge copy that met the webhook's claim in
    # progress is delivered again after the queue's visibility timeout.
    deadline = time.time() + (45 if events == "both" else 5)
    while left() and time.time() < deadline:
        time.sleep(1)
    for url, count in left().items():
        problems.append(f"{url}: {count} message(s) left")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", choices=["webhook", "eventbridge", "both"], default="webhook",
                        help="how Stripe's events reach the runner (default: webhook)")
    events = parser.parse_args().events
    target = os.path.join(ROOT, "target", "debug")
    for name, address in (("DEMO_EMULATOR", EMULATOR), ("DEMO_RUNNER", RUNNER)):
        if port_taken(address):
            log(f"{address} is already in use (another emulator or runner?): free it or set {name}")
            return 1
    now = int(time.time())
    today = now - now % DAY
    types = [{"id": t, "data_available_start": today - 365 * DAY, "data_available_end": today,
              "file_size": size} for t, size in zip(TYPES, [48_000, 2_500_000, 9_000_000])]
    env = dict(os.environ)
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_SECRET_ARN"):
        env.pop(name, None)
    env.update({
        "STRIPE_ACCOUNTS": json.dumps([{"account": a, "api_key": k, "webhook_secret": w,
                                        "event_destination": DESTINATIONS[a]} for a, k, w in ACCOUNTS]),
        "STRIPE_API_BASE": f"http://{EMULATOR}",
        "STRIPE_FILE_HOSTS": "127.0.0.1",
        "REPORTS": json.dumps(SPECS),
        "LOOKBACK_DAYS": str(LOOKBACK_DAYS),
        "REPORTS_PREFIX": PREFIX,
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    # The fourth function: each stored CSV becomes its table file.
    local_aws.create_tables_resources(env, database="stripe_reports_demo")
    if not env.get("EVENTBRIDGE_QUEUE_URL"):
        log("no EVENTBRIDGE_QUEUE_URL: run the demo inside scripts/local_aws.py (make demo)")
        return 1
    emulator_accounts = [{"id": a, "api_key": k, "webhook_secrets": [w], "event_destination": DESTINATIONS[a]}
                         for a, k, w in ACCOUNTS]
    targets = []
    if events in ("webhook", "both"):
        targets += ["--webhook-url", f"http://{RUNNER}/webhooks/stripe"]
    if events in ("eventbridge", "both"):
        targets += ["--eventbridge-url", f"http://{RUNNER}/eventbridge/events"]
    os.makedirs(os.path.join(ROOT, ".local"), exist_ok=True)
    started = []
    try:
        emulator_log = open(os.path.join(ROOT, ".local", "demo-emulator.log"), "w")
        started.append(subprocess.Popen(
            [os.path.join(target, "stripe-emulator"), "--listen", EMULATOR,
             "--accounts", json.dumps(emulator_accounts), *targets,
             "--run-delay-ms", "1500", "--report-types", json.dumps(types)],
            stdout=emulator_log, stderr=subprocess.STDOUT))
        if not wait_http(f"http://{EMULATOR}/_emulator/stats"):
            log("the Stripe emulator did not start (see .local/demo-emulator.log)")
            return 1
        log(f"Stripe emulator on {EMULATOR} serving {', '.join(a for a, _, _ in ACCOUNTS)}; "
            f"moto on {env['AWS_ENDPOINT_URL']}")
        runner_log = open(os.path.join(ROOT, ".local", "demo-runner.log"), "w")
        started.append(subprocess.Popen(
            [os.path.join(target, "stripe-reports"), "local", "--listen", RUNNER, "--schedule-every", "1h"],
            env=env, stdout=runner_log, stderr=subprocess.STDOUT))
        log(f"stripe-reports local on {RUNNER} with both accounts: the first scheduler tick runs now; "
            f"events by {'webhook and EventBridge' if events == 'both' else events}")

        kwargs = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
        dynamodb = boto3.client("dynamodb", **kwargs)
        s3 = boto3.client("s3", **kwargs)
        bucket = env["REPORTS_BUCKET"]
        expected = len(planned(today))
        deadline = time.time() + TIMEOUT
        runs, stored = [], []
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
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=PREFIX).get("Contents", [])
        for obj in sorted(listed, key=lambda o: o["Key"]):
            print(f"  s3://{bucket}/{obj['Key']}  ({obj['Size']} bytes)")
        print("\nLedger (run items):")
        for run in sorted(stored, key=lambda r: (r.get("account", {}).get("S", ""), r["report_type"]["S"],
                                                 r["interval_start"]["N"])):
            print(f"  {run['pk']['S']:<34} {run.get('account', {}).get('S', '?'):<21} "
                  f"{run['report_type']['S']:<40} {run['status']['S']:<7} "
                  f"{run['bytes']['N']:>8} bytes  sha256 {run['sha256']['S'][:16]}…")

        problems = audit(s3, bucket, runs, today) + events_audit(events, env)
        # What an operator sees: `stripe-reports status` for every configured
        # account (named in STRIPE_ACCOUNTS: the ledger only, no Stripe call).
        status = subprocess.run([os.path.join(target, "stripe-reports"), "status"], env=env,
                                capture_output=True, text=True, timeout=60)
        print("\n$ stripe-reports status")
        for line in status.stdout.splitlines():
            print(f"  {line}")
        if status.returncode != 0:
            problems.append(f"stripe-reports status exited {status.returncode}: {status.stderr.strip()[-300:]}")
        if stored:
            first = sorted(stored, key=lambda r: r["s3_key"]["S"])[0]
            body = s3.get_object(Bucket=bucket, Key=first["s3_key"]["S"])["Body"].read(400)
            print(f"\nFirst lines of {first['s3_key']['S']}:")
            for line in body.decode().splitlines()[:4]:
                print(f"  {line}")
        # SQL over the tables: what the pipeline wrote, copied from the bucket,
        # queried with DuckDB and checked against the CSVs (scripts/demo_sql.py).
        log("SQL over the tables (DuckDB)")
        csvs = len([o for o in listed if o["Key"].endswith(".csv")])
        deadline = time.time() + 90
        while time.time() < deadline:  # the converter runs after each file is stored
            tables = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}tables/").get("Contents", [])
            if len([o for o in tables if o["Key"].endswith(".parquet")]) >= csvs:
                break
            time.sleep(1)
        # The converter records each table file in the ledger, last.
        items = dynamodb.scan(TableName=env["RUNS_TABLE"], ConsistentRead=True)["Items"]
        untabled = sorted(i["pk"]["S"][4:] for i in items
                          if i["pk"]["S"].startswith("run#") and i["status"]["S"] == "stored"
                          and not ("parquet_key" in i and "rows" in i))
        if untabled:
            problems.append(f"stored runs without a table file in the ledger: {untabled}")
        copy = os.path.join(ROOT, ".local", "demo-reports")
        shutil.rmtree(copy, ignore_errors=True)
        copied = download_reports(s3, bucket, PREFIX, copy)
        print(f"\n{len(copied)} objects of s3://{bucket}/{PREFIX} copied to {copy}\n")
        try:
            check_tables(copy)
        except TablesDiffer as differ:
            problems += [f"SQL over the tables: {p}" for p in differ.problems]
        print()
        stats = emulator_get("/_emulator/stats")
        log(f"webhooks delivered: {stats['webhook_deliveries']}, EventBridge events delivered: "
            f"{stats['eventbridge_deliveries']}, runs created: {stats['runs_created']}")
        for problem in problems:
            log(f"  {problem}")
        for account, _, _ in ACCOUNTS:
            count = len([r for r in stored if r.get("account", {}).get("S") == account])
            log(f"{account}: {count} reports under s3://{bucket}/{PREFIX}account={account}/")
        log("PASS: every report of each account stored once under its account, with Stripe's bytes, "
            "and queryable as typed Parquet with the CSVs' figures" if not problems else "FAIL")
        return 0 if not problems else 1
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
