#!/usr/bin/env python3
"""`make reliability`: faults injected end to end on the local stack.

Every scenario starts from empty AWS state (moto's server, reset), a fresh
Stripe emulator and a fresh `stripe-reports local`, injects its fault, waits
for the pipeline to settle and ends with the same audit, account by account
(one account, the emulator's default, except in scenario 14):

  * every planned (report type, interval) has exactly one `stored` run item;
  * exactly one S3 object per stored run, under the account's own
    `account=` segment, whose bytes hash to the emulator's SHA-256 for that
    file of one of the account's own runs (and to the ledger's), and no
    other object; an account expected to have nothing has nothing;
  * no open multipart upload;
  * no message left on the download, schedule or event (EventBridge) queue,
    nor on their DLQs unless the scenario expects one there;
  * the emulator created exactly as many runs as the ledger holds distinct
    requests, and as many as the scenario planned;
  * every request that carried the API key reached the emulator's allow-listed
    address, none reached the off-list one (127.0.0.2), and no request with
    one account's key named another account's object.

Then the security checks (a file redirect off the allow-list, malformed input
at every edge), an orphaned run meeting Stripe's idempotency window, and last
a scan of every log line the suite captured for the API key and both webhook
secrets (which fails, too, when a scenario left fewer lines than a floor: a
scan of nothing finds nothing). One line per scenario, then `N passed, N
failed`; exit 1 if any failed, 2 for an unknown scenario number in `--only`.

S3 goes through a TCP proxy in front of moto (`AWS_ENDPOINT_URL_S3`) so that a
scenario can cut S3 off and bring it back with its state intact (killing moto
itself would also erase the bucket, which S3 never does).

Run by `make reliability` (it builds the binaries and the venv). Logs:
.local/reliability/.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from http import client as http_client, server as http_server  # `http` is the suite's helper below

import boto3
import stripe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import local_aws  # noqa: E402

TARGET = os.path.join(ROOT, "target", "debug")
LOGS = os.environ.get("RELIABILITY_LOGS", os.path.join(ROOT, ".local", "reliability"))
# Overridable, so that two suites (or the suite and `make demo`) can run side by side.
EMULATOR = os.environ.get("RELIABILITY_EMULATOR", "127.0.0.1:12111")
OFF_LIST = os.environ.get("RELIABILITY_OFF_LIST", "127.0.0.2:12112")
RUNNER = os.environ.get("RELIABILITY_RUNNER", "127.0.0.1:9000")
MOTO_PORT = int(os.environ.get("MOTO_PORT", "5000"))
S3_PROXY_PORT = MOTO_PORT + 100
DAY = 86400
MIB = 1024 * 1024
# SQS settings of the suite's queues: redelivery after 10 s (the production
# template uses 6× the downloader's timeout), DLQ after 5 receives.
VISIBILITY_TIMEOUT = 10
MAX_RECEIVE_COUNT = 5

# Credentials of this run only, so that the leak scan cannot be fooled by
# a value that also appears in the code or the docs.
API_KEY = "sk_test_rel_" + secrets.token_hex(12)
NEW_SECRET = "whsec_relnew_" + secrets.token_hex(12)
OLD_SECRET = "whsec_relold_" + secrets.token_hex(12)
# The two accounts of scenario 14, each with its own key and signing secret.
# Each also names its EventBridge event destination (the emulator's default
# for the account): every runner has the event queue (EVENTBRIDGE_QUEUE_URL),
# and with several accounts the eventbridge function needs them.
TWO_ACCOUNTS = [
    {"id": "acct_1ReliabilityA000", "api_key": "sk_test_relA_" + secrets.token_hex(12),
     "webhook_secret": "whsec_relA_" + secrets.token_hex(12), "event_destination": "ed_test_1ReliabilityA000"},
    {"id": "acct_1ReliabilityB000", "api_key": "sk_test_relB_" + secrets.token_hex(12),
     "webhook_secret": "whsec_relB_" + secrets.token_hex(12), "event_destination": "ed_test_1ReliabilityB000"},
]
SECRETS_TO_HIDE = [API_KEY, NEW_SECRET, OLD_SECRET] + [
    value for account in TWO_ACCOUNTS for value in (account["api_key"], account["webhook_secret"])]

TODAY = int(time.time()) // DAY * DAY
# The one account of the suite: the emulator's default, whose id the
# functions learn from the key (`GET /v1/account`); its files land under
# `stripe/account=<it>/`.
ACCOUNT = "acct_1EmulatorDefault00"


class Failed(Exception):
    """A check of a scenario did not hold."""


def check(condition, message):
    if not condition:
        raise Failed(message)


def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def emulator_json(path, body=None):
    status, data = http("POST" if body is not None else "GET", f"http://{EMULATOR}{path}", body)
    check(status == 200, f"emulator {path} answered {status}: {data[:200]!r}")
    return json.loads(data)


def wait_for(predicate, timeout, what, interval=0.5):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise Failed(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class TcpProxy:
    """A TCP forwarder that can be cut (listener closed, every connection
    reset) and restored, standing in for S3 becoming unreachable."""

    def __init__(self, listen_port, target_port):
        self.listen_port = listen_port
        self.target_port = target_port
        self.listener = None
        self.connections = []
        self.lock = threading.Lock()

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.listen_port))
        listener.listen(128)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self):
        listener, self.listener = self.listener, None
        if listener:
            listener.close()
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            try:
                # RST, not FIN: a connection cut, not a polite close.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
            except OSError:
                pass

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(256 * 1024)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class DynamoDbProxy:
    """An HTTP proxy in front of moto's DynamoDB (a client points
    `AWS_ENDPOINT_URL_DYNAMODB` at `url`) that forwards every request except
    those `refusal(headers, body)` answers for: (status, error type, message)."""

    PUT_ITEM = "DynamoDB_20120810.PutItem"

    def refusal(self, headers, body):
        return None

    @staticmethod
    def item(body):
        try:
            return json.loads(body)["Item"]
        except (ValueError, KeyError, TypeError):
            return {}

    def __init__(self, target_port):
        self.refused = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http_server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the suite prints one line per scenario
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    refusal = proxy.refusal(self.headers, body)
                    if refusal:
                        proxy.refused += 1
                    else:
                        proxy.forwarded += 1
                if refusal:
                    status, error, message = refusal
                    self._answer(status, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps({
                        "__type": f"com.amazonaws.dynamodb.v20120810#{error}", "message": message}).encode())
                    return
                upstream = http_client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    headers = {k: v for k, v in response.getheaders()
                               if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                                    "content-length")}
                    self._answer(response.status, headers, data)
                finally:
                    upstream.close()

            do_GET = do_POST

            def _answer(self, status, headers, data):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class LedgerWriteRefuser(DynamoDbProxy):
    """Every request forwarded except `PutItem` of a `request#` item, answered
    with HTTP 500 (an internal error the SDK retries, every retry refused
    too): the ledger unreachable for the scheduler's request write, and only
    for that."""

    def refusal(self, headers, body):
        if headers.get("X-Amz-Target") == self.PUT_ITEM and \
                self.item(body).get("pk", {}).get("S", "").startswith("request#"):
            return 500, "InternalServerError", "refused by the reliability suite"
        return None


class ClaimThrottler(DynamoDbProxy):
    """The ledger table throttled for one call: the first claim of a
    `reporting.report_run.succeeded` event (`PutItem` of an `event#` item) is
    answered `ProvisionedThroughputExceededException` on every attempt the SDK
    makes of it (its retries share the `amz-sdk-invocation-id` header), and
    only that call: one delivery fails, "ledger unavailable"; every other
    request goes through, the same event's other copies' claims included."""

    def __init__(self, target_port):
        super().__init__(target_port)
        self.invocation = None  # the one call refused
        self.event = None  # its `event#` key
        self.attempts = []  # its `amz-sdk-request` headers, one per attempt
        self.without_invocation_id = 0

    def refusal(self, headers, body):
        if headers.get("X-Amz-Target") != self.PUT_ITEM:
            return None
        item = self.item(body)
        invocation = headers.get("amz-sdk-invocation-id")
        if self.invocation is None and item.get("pk", {}).get("S", "").startswith("event#") and \
                item.get("event_type", {}).get("S") == "reporting.report_run.succeeded":
            if not invocation:
                self.without_invocation_id += 1
                return None
            self.invocation, self.event = invocation, item["pk"]["S"]
        if invocation is None or invocation != self.invocation:
            return None
        self.attempts.append(headers.get("amz-sdk-request", ""))
        return 400, "ProvisionedThroughputExceededException", "throttled by the reliability suite"


class Stack:
    """moto (shared, reset per scenario), the S3 proxy, and per scenario the
    emulator and the runner."""

    def __init__(self, moto_endpoint):
        self.moto = moto_endpoint
        self.proxy = TcpProxy(S3_PROXY_PORT, MOTO_PORT)
        self.proxy.start()
        kwargs = dict(endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
        self.dynamodb = boto3.client("dynamodb", **kwargs)
        self.s3 = boto3.client("s3", **kwargs)  # direct: sees S3 even while the proxy is cut
        self.sqs = boto3.client("sqs", **kwargs)
        self.secretsmanager = boto3.client("secretsmanager", **kwargs)
        self.processes = []
        self.logdir = None
        self.env = {}
        self.slugs = []  # the scenarios begun, for the log scan

    # ---- per scenario -------------------------------------------------
    def begin(self, slug, types, lookback_days, run_delay_ms=1000, emulator_secrets=(NEW_SECRET,),
              faults=None, runner_secret=NEW_SECRET, accounts=None, eventbridge=False):
        """`accounts`: several accounts ({"id", "api_key", "webhook_secret",
        "event_destination"}), served by the emulator (`--accounts`) and
        configured in the secret's several-accounts shape; without it, the
        emulator's default account with API_KEY, in the one-account shape.
        `eventbridge`: the emulator also sends every event in EventBridge's
        shape to the runner's `POST /eventbridge/events` (the stand-in for
        the rule and its target, the event queue)."""
        self.logdir = os.path.join(LOGS, slug)
        os.makedirs(self.logdir, exist_ok=True)
        self.slugs.append(slug)
        self.types = types
        self.lookback_days = lookback_days
        self.account_ids = [a["id"] for a in accounts] if accounts else [ACCOUNT]
        http("POST", f"{self.moto}/moto-api/reset")
        env = dict(local_aws.DEFAULTS)
        env["AWS_ENDPOINT_URL"] = self.moto
        local_aws.create_resources(env, visibility_timeout=VISIBILITY_TIMEOUT,
                                   max_receive_count=MAX_RECEIVE_COUNT)
        if accounts:
            secret = {"accounts": [{"account": a["id"], "api_key": a["api_key"],
                                    "webhook_secret": a["webhook_secret"],
                                    "event_destination": a["event_destination"]} for a in accounts]}
        else:
            secret = {"api_key": API_KEY, "webhook_secret": runner_secret}
        arn = self.secretsmanager.create_secret(Name="stripe-reports/reliability",
                                                SecretString=json.dumps(secret))["ARN"]
        env.update({
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{S3_PROXY_PORT}",
            "STRIPE_SECRET_ARN": arn,
            "STRIPE_API_BASE": f"http://{EMULATOR}",
            "STRIPE_FILE_HOSTS": "127.0.0.1",
            "REPORTS": json.dumps([{"report_type": t["id"]} for t in types]),
            "LOOKBACK_DAYS": str(lookback_days),
            "REPORTS_PREFIX": "stripe/",
            # Our crates at debug: more lines for the leak scan to read.
            "RUST_LOG": "info,stripe_reports=debug,scheduler=debug,webhook=debug,eventbridge=debug,downloader=debug",
            "PATH": os.environ.get("PATH", ""),
        })
        self.env = env
        emulator_types = [dict(t, data_available_start=TODAY - 365 * DAY, data_available_end=TODAY)
                          for t in types]
        served = ["--accounts", json.dumps([{"id": a["id"], "api_key": a["api_key"],
                                              "webhook_secrets": [a["webhook_secret"]],
                                              "event_destination": a["event_destination"]} for a in accounts])
                  ] if accounts else ["--api-key", API_KEY]
        if eventbridge:
            served += ["--eventbridge-url", f"http://{RUNNER}/eventbridge/events"]
        self.spawn("emulator", [
            os.path.join(TARGET, "stripe-emulator"), "--listen", EMULATOR, "--also-listen", OFF_LIST,
            *served, "--webhook-url", f"http://{RUNNER}/webhooks/stripe",
            "--webhook-secret", ",".join(emulator_secrets), "--run-delay-ms", str(run_delay_ms),
            "--report-types", json.dumps(emulator_types)], env={"PATH": env["PATH"], "RUST_LOG": "info"})
        wait_for(lambda: http_ok(f"http://{EMULATOR}/_emulator/stats"), 20, "the emulator")
        if faults:
            self.faults(faults)

    def faults(self, faults):
        emulator_json("/_emulator/faults", faults)

    def spawn(self, name, argv, env=None):
        log = open(os.path.join(self.logdir, f"{name}.log"), "ab")
        process = subprocess.Popen(argv, env=self.env if env is None else env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def start_runner(self, schedule_every="1h", name="runner", listen=RUNNER):
        process = self.spawn(name, [os.path.join(TARGET, "stripe-reports"), "local", "--listen", listen,
                                    "--schedule-every", schedule_every])
        wait_for(lambda: port_open(listen) or process.poll() is not None, 30, "the runner")
        check(process.poll() is None, f"the runner exited with {process.returncode} (see {self.logdir})")
        return process

    def invoke(self, function, event=None, env=None, name=None):
        """`stripe-reports invoke`: (exit code, stdout, stderr)."""
        argv = [os.path.join(TARGET, "stripe-reports"), "invoke", function]
        stdin = None
        if event is not None:
            argv += ["--event", "-"]
            stdin = json.dumps(event).encode()
        result = subprocess.run(argv, env=env or self.env, input=stdin, capture_output=True, timeout=120)
        with open(os.path.join(self.logdir, f"{name or 'invoke-' + function}.log"), "ab") as log:
            log.write(result.stdout + result.stderr)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def end(self):
        for process in reversed(self.processes):
            local_aws.stop(process)  # SIGTERM to its process group, SIGKILL after 10 s
        self.processes = []
        if self.proxy.listener is None:
            self.proxy.start()

    # ---- what the stack holds -----------------------------------------
    def items(self):
        items, start = [], None
        while True:
            kwargs = {"TableName": self.env["RUNS_TABLE"], "ConsistentRead": True}
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.dynamodb.scan(**kwargs)
            items += page["Items"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    def runs(self):
        return [i for i in self.items() if i["pk"]["S"].startswith("run#")]

    def planned(self):
        planned = {(t["id"], TODAY - k * DAY) for t in self.types for k in range(1, self.lookback_days + 1)}
        # Every check "for each planned interval" would hold for an empty plan.
        check(len(planned) == len(self.types) * self.lookback_days > 0,
              f"the plan has {len(planned)} intervals for {len(self.types)} types × {self.lookback_days} days")
        return planned

    def stored_planned(self, accounts=None):
        """Every planned interval has a stored run, for each of `accounts`
        (default: every account of the scenario)."""
        stored = {(r.get("account", {}).get("S"), r["report_type"]["S"], int(r["interval_start"]["N"]))
                  for r in self.runs() if r["status"]["S"] == "stored"}
        return all({(account, *key) for key in self.planned()} <= stored
                   for account in (accounts or self.account_ids))

    def queue_depth(self, url):
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attributes.values())

    def open_uploads(self):
        return self.s3.list_multipart_uploads(Bucket=self.env["REPORTS_BUCKET"]).get("Uploads", [])

    def settled(self, accounts=None):
        """All planned reports of `accounts` stored and the queues drained
        (download, schedule and the event queue)."""
        if not self.stored_planned(accounts):
            return False
        return all(self.queue_depth(self.env[queue]) == 0
                   for queue in ("DOWNLOAD_QUEUE_URL", "SCHEDULE_QUEUE_URL", "EVENTBRIDGE_QUEUE_URL"))

    def wait_settled(self, timeout=120, accounts=None):
        wait_for(lambda: self.settled(accounts), timeout,
                 "every planned report stored and the queues drained"
                 + (f" ({', '.join(accounts)})" if accounts else ""))

    def emulator_runs(self, account):
        """The runs Stripe holds for `account` (`/_emulator/runs?account=`)."""
        return emulator_json(f"/_emulator/runs?account={account}")

    # ---- the audit ------------------------------------------------------
    def audit(self, expected_requests, expect_dlq=()):
        """The audit, account by account. `expected_requests`: the runs
        planned for the scenario's one account, or {account: runs} for the
        accounts audited; an account of the scenario left out must have
        nothing at all (no run or request in the ledger, no object, no run
        at Stripe)."""
        expected = (expected_requests if isinstance(expected_requests, dict)
                    else {self.account_ids[0]: expected_requests})
        check(set(expected) <= set(self.account_ids), f"audit of accounts {sorted(expected)} not in the scenario")
        problems = []
        items = self.items()
        runs = [i for i in items if i["pk"]["S"].startswith("run#")]
        requests = [i for i in items if i["pk"]["S"].startswith("request#")]
        bucket = self.env["REPORTS_BUCKET"]
        objects = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects += page.get("Contents", [])
        # With tables on (scenario 15 only), the table files and their
        # uploads are the tables audit's (`audit_tables`), not stray objects.
        tables = self.env.get("GLUE_DATABASE") and TABLES_PREFIX
        if tables:
            objects = [o for o in objects if not o["Key"].startswith(tables)]
        at_stripe = {account: self.emulator_runs(account) for account in self.account_ids}

        for account, planned_requests in expected.items():
            problems += self.audit_account(account, planned_requests, runs, requests, objects, at_stripe[account])
        # What belongs to no audited account: stored runs, requests, objects
        # outside their `account=` segments, runs at Stripe.
        others = [r for r in runs if r.get("account", {}).get("S") not in expected]
        if others:
            problems.append(f"{len(others)} run(s) recorded for accounts not expected to have any: "
                            f"{sorted({(r.get('account', {}).get('S'), r['status']['S']) for r in others})}")
        others = [r["pk"]["S"] for r in requests if r["pk"]["S"].split("#")[1] not in expected]
        if others:
            problems.append(f"requests of accounts not expected to have any: {others}")
        prefixes = tuple(f"stripe/account={account}/" for account in expected)
        others = [o["Key"] for o in objects if not o["Key"].startswith(prefixes)]
        if others:
            problems.append(f"{len(others)} object(s) outside the audited accounts' segments: {others[:3]}")
        for account in set(self.account_ids) - set(expected):
            if at_stripe[account]:
                problems.append(f"{account}: {len(at_stripe[account])} run(s) at Stripe, expected none")

        uploads = [u for u in self.open_uploads() if not (tables and u["Key"].startswith(tables))]
        if uploads:
            problems.append(f"{len(uploads)} open multipart upload(s): {[u['Key'] for u in uploads]}")
        for queue in ("DOWNLOAD_QUEUE_URL", "SCHEDULE_QUEUE_URL", "EVENTBRIDGE_QUEUE_URL", "DOWNLOAD_QUEUE_DLQ_URL",
                      "SCHEDULE_QUEUE_DLQ_URL", "EVENTBRIDGE_QUEUE_DLQ_URL"):
            depth = self.queue_depth(self.env[queue])
            wanted = 1 if queue in expect_dlq else 0
            if (depth > 0) != (wanted > 0):
                problems.append(f"{queue}: {depth} message(s) left")
        stats = emulator_json("/_emulator/stats")
        listed = sum(len(r) for r in at_stripe.values())
        if not (stats["runs_created"] == listed == len(requests)):
            problems.append(f"runs created at Stripe {stats['runs_created']}, listed {listed}, "
                            f"requests in the ledger {len(requests)}")
        problems += self.key_destinations()
        return problems

    def audit_account(self, account, planned_requests, runs, requests, objects, at_stripe):
        """One account's part of the audit: one stored run per planned
        interval, under its own `account=` segment, byte for byte Stripe's
        file of one of its own runs; its objects exactly those; as many runs
        at Stripe as requests in the ledger as planned."""
        name = "" if self.account_ids == [ACCOUNT] else f"{account}: "
        problems = []
        stored = [r for r in runs if r["status"]["S"] == "stored" and r.get("account", {}).get("S") == account]
        by_interval = {}
        for run in stored:
            key = (run["report_type"]["S"], int(run["interval_start"]["N"]))
            by_interval.setdefault(key, []).append(run)
        for key in sorted(self.planned()):
            count = len(by_interval.get(key, []))
            if count != 1:
                problems.append(f"{name}{key[0]} {time.strftime('%Y-%m-%d', time.gmtime(key[1]))}: "
                                f"{count} stored runs")
        extra = set(by_interval) - self.planned()
        if extra:
            problems.append(f"{name}stored runs nobody planned: {sorted(extra)}")

        segment = f"stripe/account={account}/"
        mine = sorted(o["Key"] for o in objects if o["Key"].startswith(segment))
        if mine != sorted(r["s3_key"]["S"] for r in stored):
            problems.append(f"{name}{len(mine)} objects under {segment} for {len(stored)} stored runs")
        emulator_runs = {r["id"]: r for r in at_stripe}
        bucket = self.env["REPORTS_BUCKET"]
        for run in stored:
            run_id = run["pk"]["S"][len("run#"):]
            if not run["s3_key"]["S"].startswith(segment + "report_type="):
                problems.append(f"{run_id}: stored for account {account} at {run['s3_key']['S']} "
                                f"(expected under {segment})")
            if run_id not in emulator_runs:
                problems.append(f"{run_id}: stored for {account}, but not one of its runs at Stripe")
                continue
            digest, size = hashlib.sha256(), 0
            try:
                body = self.s3.get_object(Bucket=bucket, Key=run["s3_key"]["S"])["Body"]
                for chunk in iter(lambda: body.read(8 * MIB), b""):
                    digest.update(chunk)
                    size += len(chunk)
            except Exception as err:  # noqa: BLE001 - reported as a finding
                problems.append(f"{run_id}: object {run['s3_key']['S']} unreadable: {err}")
                continue
            file_id = (emulator_runs[run_id].get("result") or {}).get("id")
            truth = emulator_json(f"/_emulator/files/{file_id}/sha256") if file_id else {}
            if not (digest.hexdigest() == run["sha256"]["S"] == truth.get("sha256") and size == truth.get("size")):
                problems.append(f"{run_id}: object sha256 {digest.hexdigest()[:12]} ({size} B), ledger "
                                f"{run['sha256']['S'][:12]}, Stripe {str(truth.get('sha256'))[:12]} ({truth.get('size')} B)")
        own_requests = [r for r in requests if r["pk"]["S"].split("#")[1] == account]
        if not (len(at_stripe) == len(own_requests) == planned_requests):
            problems.append(f"{name}runs at Stripe {len(at_stripe)}, requests in the ledger {len(own_requests)}, "
                            f"planned {planned_requests}")
        return problems

    def key_destinations(self):
        """Every request that carried a key went to the allow-listed address
        (and some did: an empty request log proves nothing), and each key
        only ever named its own account's objects."""
        problems = []
        records = emulator_json("/_emulator/requests")
        if not any(r["authorization"] and r["listener"] == EMULATOR for r in records):
            problems.append(f"no request with the key reached the emulator ({len(records)} recorded)")
        for record in records:
            if record["listener"] == OFF_LIST:
                problems.append(f"a request reached the off-list host: {record}")
            elif record["authorization"] and record["listener"] != EMULATOR:
                problems.append(f"the key went to {record['listener']}: {record}")
        crossed = [r for r in records
                   if r.get("account") and r.get("object_account") and r["account"] != r["object_account"]]
        if crossed:
            problems.append(f"{len(crossed)} request(s) named another account's object, e.g. {crossed[0]}")
        return problems

    def webhooks_accepted(self, copies_per_event, channel="webhook"):
        """Every event the emulator sent was delivered `copies_per_event`
        times, and every copy was accepted (its last attempt answered 200),
        none refused (4xx). An attempt answered 5xx and retried is how the
        webhook asks Stripe to deliver again (e.g. while a duplicate is in
        progress), so it is counted, not a failure. `channel="eventbridge"`:
        the same of the deliveries in EventBridge's shape (accepted: on the
        event queue). Returns problems."""
        problems = []
        stats = emulator_json("/_emulator/stats")
        log = emulator_json("/_emulator/webhooks" if channel == "webhook" else "/_emulator/eventbridge")
        copies = {}
        for delivery in log:
            copies.setdefault((delivery["event"], delivery["copy"]), []).append(delivery)
        events = {event for event, _ in copies}
        if not (len(log) == stats[f"{channel}_deliveries"] > 0):
            problems.append(f"{len(log)} {channel} deliveries logged, {stats[f'{channel}_deliveries']} counted")
        if not (len(events) == stats["events"] > 0 and len(copies) == copies_per_event * stats["events"]):
            problems.append(f"{len(copies)} copies of {len(events)} events delivered for {stats['events']} "
                            f"events × {copies_per_event}")
        refused = [d for d in log if d["status"] is not None and 400 <= d["status"] < 500]
        if refused:
            problems.append(f"{len(refused)} of {len(log)} delivery attempts refused, e.g. {refused[0]}")
        last_attempts = [max(attempts, key=lambda d: d["attempt"]) for attempts in copies.values()]
        unaccepted = [d for d in last_attempts if d["status"] != 200]
        if unaccepted:
            problems.append(f"{len(unaccepted)} of {len(copies)} deliveries never answered 200, "
                            f"e.g. {unaccepted[0]}")
        return problems

    def log_text(self, name):
        with open(os.path.join(self.logdir, f"{name}.log"), errors="replace") as log:
            return log.read()


def http_ok(url):
    try:
        return http("GET", url, timeout=1)[0] == 200
    except OSError:
        return False


def port_open(address):
    host, port = address.split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def answer(stdout):
    """What `stripe-reports invoke` printed last: the function's answer (the
    lines before it are EMF metric documents, as on Lambda)."""
    return json.loads(stdout.strip().splitlines()[-1])


def kind(report_type, size=64_000, fail_first_runs=0):
    return {"id": report_type, "file_size": size, "fail_first_runs": fail_first_runs}


# Where the converter writes table files (SPEC "Tables"), under REPORTS_PREFIX.
TABLES_PREFIX = "stripe/tables/"
THREE_TYPES = ["balance.summary.1", "balance_change_from_activity.itemized.3", "payouts.itemized.3"]
# `SinkError::S3`'s message (crates/stripe-reports/src/aws/s3.rs): "S3 {operation} failed: {reason}".
S3_FAILURE = re.compile(r"S3 [A-Za-z]+ failed: ")


# ---- the scenarios ---------------------------------------------------------

def webhooks_five_times_shuffled(stack):
    """1. Every webhook delivered 5 times, in shuffled order, interleaved with
    `failed` and `report_type.updated` events."""
    types = [kind(THREE_TYPES[0], fail_first_runs=1), kind(THREE_TYPES[1], 300_000), kind(THREE_TYPES[2])]
    stack.begin("01-webhooks-x5", types, lookback_days=2,
                faults={"webhook_duplicates": 4, "webhook_shuffle_ms": 3000})
    stack.start_runner(schedule_every="4s")
    for _ in range(2):
        time.sleep(1.5)
        for t in THREE_TYPES:  # report_type.updated, ×5 each, among the run events
            emulator_json(f"/_emulator/report_types/{t}", {"data_available_end": TODAY})
    stack.wait_settled()
    # Give late duplicates (up to 3 s of shuffle, retries) time to arrive; they must change nothing.
    time.sleep(4)
    stack.wait_settled()
    stats = emulator_json("/_emulator/stats")
    # One event per finished run (7) and one per report_type.updated (2 × 3).
    check(stats["events"] == stats["runs_created"] + 6,
          f"{stats['events']} events for {stats['runs_created']} runs and 6 report_type.updated")
    # Reconcile would store everything even if the webhook refused every
    # delivery: each of the 5 copies of every event must have been accepted.
    problems = stack.webhooks_accepted(copies_per_event=5)
    failed = [r for r in stack.runs() if r["status"]["S"] == "failed"]
    check(len(failed) == 1, f"{len(failed)} failed runs recorded (expected the one failure)")
    return problems + stack.audit(expected_requests=7)


def scheduler_five_times(stack):
    """2. Scheduler invoked 5 times for the same day, two of them concurrently."""
    stack.begin("02-scheduler-x5", [kind(t) for t in THREE_TYPES], lookback_days=2)
    env = dict(stack.env)
    # Invocations 1 and 2 at once, before anything exists; then 3, 4, 5.
    started = [subprocess.Popen([os.path.join(TARGET, "stripe-reports"), "invoke", "scheduler"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in started]
    with open(os.path.join(stack.logdir, "invoke-concurrent.log"), "ab") as log:
        for out, _ in outputs:
            log.write(out)
    codes = [p.returncode for p in started]
    for _ in range(3):
        code, _, err = stack.invoke("scheduler")
        codes.append(code)
    check(codes == [0] * 5, f"scheduler exit codes {codes}")
    check(emulator_json("/_emulator/stats")["runs_created"] == 6, "not one run per interval after 5 invocations")
    stack.start_runner()  # webhooks and downloads (its own first tick is a sixth invocation)
    stack.wait_settled()
    return stack.audit(expected_requests=6)


def downloader_killed_mid_stream(stack):
    """3. Downloader process killed (SIGKILL) in the middle of a 200 MiB stream;
    the message is redelivered; the run ends stored once."""
    stack.begin("03-sigkill", [kind(THREE_TYPES[0], 200 * MIB)], lookback_days=1,
                faults={"file_bytes_per_sec": 60 * MIB})
    runner = stack.start_runner()
    wait_for(lambda: emulator_json("/_emulator/stats")["file_downloads"] >= 1, 60, "the download to start")
    wait_for(lambda: stack.open_uploads(), 30, "the multipart upload to start")
    time.sleep(1.0)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    check(not stack.stored_planned(), "the run was stored before the kill: not mid-stream")
    check(stack.open_uploads(), "no upload open at the kill")
    stack.start_runner(name="runner-restarted")
    stack.wait_settled(timeout=120)
    stats = emulator_json("/_emulator/stats")
    check(stats["file_downloads"] >= 2, "the file was not downloaded again")
    return stack.audit(expected_requests=1)


def stripe_429_storm(stack):
    """4. Stripe 429 storm (half of all API calls for 30 s) and intermittent
    500s with `Stripe-Should-Retry`."""
    stack.begin("04-429-storm", [kind(t) for t in THREE_TYPES], lookback_days=2, faults={
        "storm": {"status": 429, "fraction": 0.5, "seconds": 30},
        "inject": [{"path_prefix": "/v1/reporting/report_runs", "status": 500, "should_retry": True, "times": 3},
                   {"path_prefix": "/v1/reporting/report_runs", "method": "GET", "status": 500,
                    "should_retry": True, "times": 3}],
    })
    stack.start_runner(schedule_every="3s")
    stack.wait_settled(timeout=150)
    stats = emulator_json("/_emulator/stats")
    check(stats["injected_errors"] >= 10, f"only {stats['injected_errors']} errors were injected")
    return stack.audit(expected_requests=6)


def truncated_twice(stack):
    """5. File stream truncated on the first two attempts, whole on the third."""
    stack.begin("05-truncated", [kind(THREE_TYPES[0], 20 * MIB)], lookback_days=1,
                faults={"truncate_files": 2})
    stack.start_runner()
    stack.wait_settled(timeout=120)
    stats = emulator_json("/_emulator/stats")
    check((stats["files_truncated"], stats["file_downloads"]) == (2, 3),
          f"truncated {stats['files_truncated']} of {stats['file_downloads']} downloads (expected 2 of 3)")
    return stack.audit(expected_requests=1)


def s3_unavailable_mid_upload(stack):
    """6. S3 unavailable during an upload (cut off mid-stream, then back): the
    multipart upload is aborted, the retry stores."""
    stack.begin("06-s3-outage", [kind(THREE_TYPES[0], 100 * MIB)], lookback_days=1,
                faults={"file_bytes_per_sec": 40 * MIB})
    stack.start_runner()
    wait_for(lambda: stack.open_uploads(), 60, "the multipart upload to start")
    time.sleep(0.5)
    stack.proxy.stop()
    time.sleep(8)
    check(not stack.stored_planned(), "stored while S3 was unreachable")
    left = stack.open_uploads()
    stack.proxy.start()
    stack.wait_settled(timeout=120)
    # The downloader's own line for it: the message not handled because of
    # `SinkError::S3` ("S3 <operation> failed: ..."), not any line naming S3.
    s3_failures = [line for line in stack.log_text("runner").splitlines()
                   if "message not handled" in line and S3_FAILURE.search(line)]
    check(s3_failures, "the runner never logged a message not handled because of an S3 failure")
    check(left, "the cut left no upload open (nothing to clean up: not mid-upload)")
    return stack.audit(expected_requests=1)


def webhooks_never_delivered(stack):
    """7. Webhooks never delivered (emulator webhooks off): the scheduler's
    reconcile stores every report anyway."""
    stack.begin("07-no-webhooks", [kind(t) for t in THREE_TYPES], lookback_days=2,
                faults={"webhooks_enabled": False})
    stack.start_runner(schedule_every="3s")
    stack.wait_settled(timeout=90)
    check(emulator_json("/_emulator/stats")["webhook_deliveries"] == 0, "webhooks were delivered")
    return stack.audit(expected_requests=6)


def run_failed_at_stripe(stack):
    """8. A run that fails at Stripe: recorded `failed`, re-requested once,
    the second attempt stored; an alarm metric emitted for the first."""
    stack.begin("08-failed-run", [kind(THREE_TYPES[0], fail_first_runs=1)], lookback_days=1)
    stack.start_runner(schedule_every="3s")
    stack.wait_settled(timeout=90)
    statuses = sorted(r["status"]["S"] for r in stack.runs())
    check(statuses == ["failed", "stored"], f"run statuses {statuses}")
    failed_metric = 0
    for line in stack.log_text("runner").splitlines():
        if line.startswith("{") and '"_aws"' in line:
            failed_metric += json.loads(line).get("FailedRuns", 0)
    check(failed_metric == 1, f"FailedRuns metric summed to {failed_metric} (expected 1)")
    return stack.audit(expected_requests=2)


def secret_rolled(stack):
    """9. Secret rolled: the emulator signs with old and new secrets while the
    system has only the new one, then only the new."""
    stack.begin("09-secret-rolled", [kind(t) for t in THREE_TYPES], lookback_days=2,
                emulator_secrets=(OLD_SECRET, NEW_SECRET))
    stack.start_runner()
    stack.wait_settled(timeout=90)
    stack.faults({"webhook_secrets": [NEW_SECRET]})
    before = emulator_json("/_emulator/stats")
    for t in THREE_TYPES:
        emulator_json(f"/_emulator/report_types/{t}", {"data_available_end": TODAY})
    wait_for(lambda: emulator_json("/_emulator/stats")["webhook_deliveries"] >= before["webhook_deliveries"] + 3,
             30, "the deliveries signed with the new secret only")
    stack.wait_settled(timeout=30)
    stats = emulator_json("/_emulator/stats")
    check(stats["webhook_failures"] == 0, f"{stats['webhook_failures']} deliveries were refused")
    return stack.webhooks_accepted(copies_per_event=1) + stack.audit(expected_requests=6)


def redirect_off_the_allow_list(stack):
    """Security: a file URL that redirects to a host off the allow-list gets
    no request at all (with or without the key); once the redirect stops, the
    retry stores."""
    stack.begin("10-redirect-off-list", [kind(THREE_TYPES[0], 2 * MIB)], lookback_days=1,
                faults={"file_redirect_base": f"http://{OFF_LIST}"})
    stack.start_runner()
    wait_for(lambda: any(r["path"].endswith("/contents") for r in emulator_json("/_emulator/requests")),
             60, "the download attempt")
    time.sleep(2)
    check("is not in STRIPE_FILE_HOSTS" in stack.log_text("runner"), "the refusal is not in the runner's log")
    problems = stack.key_destinations()
    check(not problems, "; ".join(problems))
    stack.faults({})
    stack.wait_settled(timeout=60)
    return stack.audit(expected_requests=1)


def malformed_inputs(stack):
    """Security: malformed input at every edge (configuration, webhooks,
    queue messages, Stripe answers) is one clear error and changes nothing."""
    stack.begin("11-malformed", [kind(THREE_TYPES[0])], lookback_days=1)
    # Configuration: one line naming the variable, exit code ≠ 0, nothing created.
    for name, value in [("REPORTS", '[{"report_type": 5}]'), ("LOOKBACK_DAYS", "-3"),
                        ("STRIPE_FILE_HOSTS", "http://files.example.com/x"), ("STRIPE_API_BASE", "ftp://x"),
                        ("DOWNLOAD_PART_SIZE_MIB", "1")]:
        env = dict(stack.env, **{name: value}, RUST_LOG="warn")
        code, out, err = stack.invoke("scheduler", env=env, name="invoke-bad-config")
        check(code != 0 and len(err.strip().splitlines()) == 1 and name in err and not out,
              f"{name}={value}: exit {code}, stderr {err!r}")
    check(emulator_json("/_emulator/stats")["api_requests"] == 0, "a bad configuration reached Stripe")

    # The pipeline at rest, one report stored: what must not change from here.
    stack.start_runner()
    stack.wait_settled(timeout=60)
    # The ledger's records, without the scheduler's shared request pace
    # (`pace#<account>`): that item counts the requests sent to Stripe, which
    # a bad answer does not unsend.
    def ledger_records():
        return sorted(json.dumps(i, sort_keys=True) for i in stack.items() if not i["pk"]["S"].startswith("pace#"))

    before = ledger_records()
    unchanged = lambda: ledger_records() == before  # noqa: E731

    # Webhooks: every malformed delivery is a 400 and writes nothing.
    now = int(time.time())
    event = {"id": "evt_malformed", "object": "event", "api_version": "2026-07-29.dahlia", "created": now,
             "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
             "type": "reporting.report_run.succeeded",
             "data": {"object": {"id": 42, "object": "reporting.report_run", "report_type": ["x"]}}}
    signed = lambda body, t=None: {  # noqa: E731 - Stripe's own library signs
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, NEW_SECRET, timestamp=t or now),
        "Content-Type": "application/json"}
    cases = [
        ("no signature", b"{}", {}),
        ("wrong secret", b"{}", {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            "{}", OLD_SECRET, timestamp=now)}),
        ("malformed header", b"{}", {"Stripe-Signature": "t=,v1"}),
        ("stale", b"{}", signed("{}", now - 3600)),
        ("not JSON", b"not json", signed("not json")),
        ("not an event", b'{"object": "charge"}', signed('{"object": "charge"}')),
        ("wrong types in data.object", json.dumps(event).encode(), signed(json.dumps(event))),
    ]
    for what, body, headers in cases:
        status, reply = http("POST", f"http://{RUNNER}/webhooks/stripe", body, headers)
        check(status == 400, f"webhook {what}: {status} {reply!r}")
        check(b"error" in reply and len(reply.splitlines()) == 1, f"webhook {what}: {reply!r}")
    check(unchanged(), "a refused webhook wrote to the ledger")

    # Queue messages: each malformed one fails alone; nothing written.
    bodies = ["garbage", "{}", '{"run_id": 5}', json.dumps({"run_id": "frr_doesnotexist", "account": ACCOUNT})]
    records = [{"messageId": f"m{i}", "receiptHandle": "r", "body": b, "attributes": {}, "messageAttributes": {},
                "eventSource": "aws:sqs"} for i, b in enumerate(bodies)]
    code, out, err = stack.invoke("downloader", {"Records": records})
    failed = sorted(f["itemIdentifier"] for f in answer(out)["batchItemFailures"]) if code == 0 else None
    check(failed == ["m0", "m1", "m2", "m3"], f"downloader answered {out!r} ({err[-300:]!r})")
    schedule = [dict(records[0], body="not json"), dict(records[1], messageId="s1", body='{"report_type": 5}')]
    code, out, err = stack.invoke("scheduler", {"Records": schedule})
    check(code == 0 and sorted(f["itemIdentifier"] for f in answer(out)["batchItemFailures"]) == ["m0", "s1"],
          f"scheduler answered {out!r}")
    check(unchanged(), "a malformed message wrote to the ledger")

    # Stripe answers with missing fields and wrong types: one clear error,
    # nothing recorded; the next run goes on.
    for body in ['{"object": "list", "data": [{"id": "frr_1"}], "has_more": false}',
                 '{"object": "list", "data": "none", "has_more": "no"}']:
        stack.faults({"inject": [{"path_prefix": "/v1/reporting/report_runs", "method": "GET", "status": 200,
                                  "times": 1, "body": body}]})
        code, out, err = stack.invoke("scheduler", env=dict(stack.env, RUST_LOG="warn"))
        check(code != 0 and "unexpected answer from Stripe (HTTP 200)" in err,
              f"scheduler with a bad Stripe answer: exit {code}, {err[-300:]!r}")
    check(unchanged(), "a bad Stripe answer changed the ledger")
    code, _, _ = stack.invoke("scheduler")
    check(code == 0, "the next scheduler run failed")
    stack.wait_settled(timeout=30)
    return stack.audit(expected_requests=1)


def orphan_not_created_twice(stack):
    """12. An orphaned run is never created a second time: the request write
    refused after the create at Stripe, the run stored through the webhook,
    Stripe's idempotency keys expired, the scheduler run again.

    The orphan is made by `stripe-reports invoke scheduler` with DynamoDB
    behind `LedgerWriteRefuser` (PutItem of `request#` answered 500). The
    runner then stores the run through the webhook with the normal endpoint;
    its own first tick (a scheduler run between the create and the webhook,
    not the sequence under test) is kept from touching the run by making its
    first Stripe calls fail. Every step checks that it did what the sequence
    needs, so that the final audit cannot pass for another reason."""
    stack.begin("12-orphan", [kind(THREE_TYPES[0])], lookback_days=1, run_delay_ms=8000)
    with LedgerWriteRefuser(MOTO_PORT) as refuser:
        env = dict(stack.env, AWS_ENDPOINT_URL_DYNAMODB=refuser.url)
        code, _, err = stack.invoke("scheduler", env=env, name="invoke-ledger-refuses")
    check(code != 0, f"the scheduler exited 0 with its request write refused: {err[-300:]!r}")
    check(refuser.refused >= 1 and refuser.forwarded >= 1,
          f"the proxy refused {refuser.refused} request writes and forwarded {refuser.forwarded} calls")
    created = emulator_json("/_emulator/runs")
    check(len(created) == 1 and created[0]["status"] == "pending",
          f"after the refused write Stripe has {[(r['id'], r['status']) for r in created]} (expected 1 pending)")
    orphan = created[0]["id"]
    requests = [i["pk"]["S"] for i in stack.items() if i["pk"]["S"].startswith("request#")]
    check(not requests, f"the refused request write is in the ledger: {requests}")

    stack.faults({"inject": [
        {"path_prefix": "/v1/reporting/report_runs", "method": "GET", "status": 400, "should_retry": False,
         "times": 1},
        {"path_prefix": "/v1/reporting/report_types", "method": "GET", "status": 400, "should_retry": False,
         "times": 1}]})
    stack.start_runner()
    wait_for(lambda: emulator_json("/_emulator/stats")["injected_errors"] >= 2, 30,
             "the runner's first tick to meet the injected errors")
    check(emulator_json("/_emulator/runs")[0]["status"] == "pending",
          "the run finished before the runner's first tick was over (raise run_delay_ms)")
    stack.wait_settled(timeout=60)
    runs = stack.runs()
    check([(r["pk"]["S"], r["status"]["S"]) for r in runs] == [(f"run#{orphan}", "stored")],
          f"the webhook did not store the orphan: {[(r['pk']['S'], r['status']['S']) for r in runs]}")

    expired = emulator_json("/_emulator/idempotency/expire", {})["expired"]
    check(expired == 1, f"{expired} idempotency keys expired (expected the orphan's)")
    code, _, err = stack.invoke("scheduler", name="invoke-after-expiry")
    check(code == 0, f"the scheduler after the expiry exited {code}: {err[-300:]!r}")
    stack.wait_settled(timeout=30)
    return stack.audit(expected_requests=1)


def emf_values(stdout, metric):
    """The values of `metric` in the EMF lines `stripe-reports invoke` printed."""
    values = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document and metric in document:
            values.append(document[metric])
    return values


def status_of(stack, env):
    """`stripe-reports status --json`: (exit code, the JSON or None)."""
    result = subprocess.run([os.path.join(TARGET, "stripe-reports"), "status", "--json"], env=env,
                            capture_output=True, timeout=60)
    with open(os.path.join(stack.logdir, "status.log"), "ab") as log:
        log.write(result.stdout + result.stderr)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        return result.returncode, None


def overdue_reported_then_healed(stack):
    """13. A missing report is noticed: Stripe has the data, but no run is
    created (Stripe's run list unreadable, so the scheduler creates nothing
    it cannot rule out): the scheduled invocation's `OverdueIntervals` metric
    is above 0 and `stripe-reports status` exits 1 naming each interval as
    never requested; healed (the list readable again, the runner stores
    everything), the metric is 0 and `status` exits 0. The grace is set to 0
    minutes (`OVERDUE_AFTER_MINUTES`), so the sequence takes seconds."""
    stack.begin("13-overdue", [kind(THREE_TYPES[0])], lookback_days=2)
    env = dict(stack.env, OVERDUE_AFTER_MINUTES="0")
    stack.faults({"inject": [{"path_prefix": "/v1/reporting/report_runs", "method": "GET", "status": 500,
                              "should_retry": False, "times": 100000}]})
    code, out, err = stack.invoke("scheduler", env=env, name="invoke-first-sighting")
    check(code != 0, f"the scheduler exited 0 although Stripe's run list was unreadable: {out[-300:]!r}")
    check(emf_values(out, "OverdueIntervals") == [0], f"due this very moment, yet {emf_values(out, 'OverdueIntervals')}")
    time.sleep(1.5)  # due for longer than the grace (0 minutes)
    code, out, err = stack.invoke("scheduler", env=env, name="invoke-overdue")
    check(emf_values(out, "OverdueIntervals") == [2],
          f"OverdueIntervals {emf_values(out, 'OverdueIntervals')} (expected [2]): {err[-300:]!r}")
    check(emulator_json("/_emulator/stats")["runs_created"] == 0, "a run was created with the list unreadable")
    code, report = status_of(stack, env)
    check(code == 1 and report is not None and report["healthy"] is False,
          f"status exited {code} while 2 reports were overdue: {report}")
    missing = [i for spec in report["specs"] for i in spec["not_stored"]]
    check(len(missing) == 2 and all(i["state"] == "never_requested" and i["overdue_secs"] > 0 for i in missing),
          f"status does not name both intervals as never requested and overdue: {missing}")

    stack.faults({})
    stack.start_runner()
    stack.wait_settled(timeout=60)
    code, out, err = stack.invoke("scheduler", env=env, name="invoke-healed")
    check(code == 0, f"the healed scheduler exited {code}: {err[-300:]!r}")
    check(emf_values(out, "OverdueIntervals") == [0], f"healed, yet OverdueIntervals {emf_values(out, 'OverdueIntervals')}")
    code, report = status_of(stack, env)
    check(code == 0 and report is not None and report["healthy"] is True,
          f"status exited {code} with everything stored: {report}")
    return stack.audit(expected_requests=2)


def scheduler_metric_values(text, metric):
    """The values of `metric` in the scheduler's EMF lines of `text`, in
    order: only documents the alarm in template.yaml would read (namespace
    StripeReports, dimension Function=scheduler, the metric declared)."""
    values = []
    for line in text.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        declared = [m["Name"] for d in document["_aws"].get("CloudWatchMetrics", [])
                    if d.get("Namespace") == "StripeReports" and ["Function"] in d.get("Dimensions", [])
                    for m in d.get("Metrics", [])]
        if document.get("Function") == "scheduler" and metric in declared and metric in document:
            values.append(document[metric])
    return values


def next_tick(stack):
    """The `FailingAccounts` value and the summary line of the runner's next
    scheduler tick that starts from now: the one after the next to end (that
    one may have begun before). Ticks run one after another, each ending
    with its EMF line, then its "scheduler tick" line."""
    seen = len(stack.log_text("runner"))

    def ticks():
        after = stack.log_text("runner")[seen:].splitlines()
        ends = [i for i, line in enumerate(after) if "scheduler tick" in line]
        if len(ends) < 2:
            return None
        values = scheduler_metric_values("\n".join(after[ends[0] + 1:ends[1]]), "FailingAccounts")
        return (values[-1], after[ends[1]]) if values else None
    return wait_for(ticks, 20, "two scheduler ticks of the runner")


def two_accounts_one_failing(stack):
    """14. Two accounts, one of them failing: A's key revoked, B in a 429
    storm; A named as failing, then caught up.

    A's key is revoked (Stripe answers 401 to every request with it) from
    before the runner's cold start; B meets a storm of 429s (60 % of its API
    requests) once the runner is up. B's reports are stored under B's
    segment, nothing of A's anywhere, and A is named where an operator looks
    (the scheduler's log and answer, its `FailingAccounts` metric, which
    `FailingAccountsAlarm` watches). The storm lifted and A's key valid
    again, the warm runner checks A's key again (at most once a minute,
    `RECHECK_EVERY`: most of the scenario's time) and A catches up, nothing
    duplicated at Stripe or in S3.

    (The storm starts after the cold start: a cold start's key check that
    meets 429s on every retry leaves that account failing for a minute,
    which is not what this scenario is about.)"""
    a, b = (account["id"] for account in TWO_ACCOUNTS)
    types = [kind(t) for t in THREE_TYPES[:2]]
    stack.begin("14-two-accounts", types, lookback_days=2, accounts=TWO_ACCOUNTS,
                faults={"revoked_accounts": [a]})
    stack.start_runner(schedule_every="2s")
    stack.faults({"revoked_accounts": [a],
                  "storm": {"status": 429, "fraction": 0.6, "seconds": 600, "account": b}})
    storm_began = time.time()

    # The storm on B for 8 s at least, until B has met 8 of its 429s; A's
    # key is refused (401) from the runner's cold start on.
    wait_for(lambda: time.time() - storm_began >= 8 and emulator_json("/_emulator/stats")["injected_errors"] >= 8,
             30, "B to meet 8 of the storm's 429s")
    records = emulator_json("/_emulator/requests")
    check(any(r["account"] == a for r in records) and emulator_json("/_emulator/stats")["unauthorized"] >= 1,
          "no request was made (and refused) with A's key")
    stack.faults({"revoked_accounts": [a]})  # the storm lifted, A still revoked
    stack.wait_settled(timeout=60, accounts=[b])

    # B complete; of A, nothing at all (no run, request or object, no run
    # at Stripe), and no object of B's segment that is not one of B's runs.
    problems = stack.audit({b: len(stack.planned())})
    # A's failure where an operator sees it: the error line naming it, and
    # a tick's answer and metric (B healthy by now: exactly 1).
    metric, line = next_tick(stack)
    check(metric == 1, f"FailingAccounts {metric} on a tick after B settled (expected 1: A)")
    check("scheduler tick had errors" in line and f"({a}: its api_key cannot be checked" in line
          and f"{b}: " not in line, f"the tick's error does not name A (alone) as failing: {line[:400]!r}")
    cannot = [line for line in stack.log_text("runner").splitlines()
              if "Stripe account cannot be worked" in line and a in line]
    check(cannot, "the runner never logged that A cannot be worked")
    code, out, err = stack.invoke("scheduler", name="invoke-a-revoked")
    check(code != 0 and f"{a}: its api_key cannot be checked" in err,
          f"a scheduler invocation with A revoked: exit {code}, {err[-300:]!r}")
    check(scheduler_metric_values(out, "FailingAccounts") == [1],
          f"the invocation's FailingAccounts: {scheduler_metric_values(out, 'FailingAccounts')} (expected [1])")

    # A's key valid again: the warm runner checks it again (a minute after
    # its failed check at the cold start) and catches up.
    stack.faults({})
    stack.wait_settled(timeout=90)
    metric, line = next_tick(stack)
    check(metric == 0 and "scheduler tick had errors" not in line,
          f"FailingAccounts {metric} on a tick after A caught up (expected 0): {line[:300]!r}")
    for account in (a, b):
        per_interval = {}
        for run in stack.emulator_runs(account):
            key = (run["report_type"], run["parameters"]["interval_start"], run["parameters"]["interval_end"])
            per_interval[key] = per_interval.get(key, 0) + 1
        doubled = {k: n for k, n in per_interval.items() if n != 1}
        check(len(per_interval) == len(stack.planned()) and not doubled,
              f"{account}: runs at Stripe per (type, interval) {per_interval}")
    return problems + stack.webhooks_accepted(copies_per_event=1) + stack.audit(
        {a: len(stack.planned()), b: len(stack.planned())})


# Scenario 15: its own Glue database; a CSV big enough that its conversion
# takes seconds in the debug build (the kill lands mid-conversion).
TABLES_DATABASE = "reliability_tables"
TABLES_BIG_CSV = 30 * MIB
# The second runner of scenario 15 (a second consumer of the conversion queue).
RUNNER_2 = os.environ.get("RELIABILITY_RUNNER_2",
                          f"{RUNNER.rsplit(':', 1)[0]}:{int(RUNNER.rsplit(':', 1)[1]) + 1}")


def table_key_of(csv_key):
    """The table file's key for a stored CSV's key, derived here (SPEC
    "Tables"), not with the converter's code: `stripe/tables/<table>/
    account=<a>/date=<d>/<run>.parquet`, table = the report type with every
    character outside [a-z0-9] replaced by `_`. None for a key of another shape."""
    match = re.fullmatch(r"stripe/account=([^/]+)/report_type=([^/]+)/date=(\d{4}-\d{2}-\d{2})/([^/]+)\.csv",
                         csv_key)
    if not match:
        return None
    account, report_type, date, run = match.groups()
    return f"{TABLES_PREFIX}{re.sub('[^a-z0-9]', '_', report_type)}/account={account}/date={date}/{run}.parquet"


def csv_data_rows(path):
    """Data rows of a CSV file: records after the header (a BOM, CRLF and
    quoted line breaks handled by the csv module), blank lines not counted."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return max(sum(1 for record in csv.reader(f) if record) - 1, 0)


def conversion_body(run, again=False):
    body = {"run_id": run["pk"]["S"][len("run#"):], "account": run["account"]["S"]}
    return json.dumps(dict(body, again=True) if again else body)


def table_files_written(stack, key):
    """Each time a runner of the scenario logged writing `key`: (runner,
    start, end) in seconds since the epoch, by end."""
    writes = []
    for name in ("runner", "runner-restarted", "runner-2"):
        if not os.path.exists(os.path.join(stack.logdir, f"{name}.log")):
            continue
        for line in stack.log_text(name).splitlines():
            if "table file written" in line and f"table_key={key} " in line:
                end = datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
                seconds = float(re.search(r" seconds=([0-9.e-]+)", line).group(1))
                writes.append((name, end - seconds, end))
    return sorted(writes, key=lambda w: w[2])


def audit_tables(stack, database, report_types):
    """The tables' audit: one `.parquet` object per stored run at its key
    (the ledger's `parquet_key`), no other object under the tables prefix or
    anywhere ending in `.parquet`; the ledger's `rows` = the file's rows
    (DuckDB) = the CSV's data rows (csv module); the conversion queue and its
    DLQ empty; one Glue table per type, partitioned by account and date.
    Open uploads at table keys (a kill leaves them; the bucket's lifecycle
    rule aborts them at AWS) are reported, not failed; others fail
    `Stack.audit`. Returns the problems."""
    import duckdb  # only this scenario needs it
    import tempfile

    problems = []
    bucket = stack.env["REPORTS_BUCKET"]
    stored = [r for r in stack.runs() if r["status"]["S"] == "stored"]
    objects = []
    for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += page.get("Contents", [])
    expected = {}
    for run in stored:
        run_id = run["pk"]["S"][len("run#"):]
        key = table_key_of(run["s3_key"]["S"])
        if key is None:
            problems.append(f"{run_id}: CSV key {run['s3_key']['S']} not of the reports layout")
            continue
        if run.get("parquet_key", {}).get("S") != key:
            problems.append(f"{run_id}: ledger parquet_key {run.get('parquet_key', {}).get('S')}, expected {key}")
        expected[key] = run
    tabled = sorted(o["Key"] for o in objects if o["Key"].startswith(TABLES_PREFIX) or o["Key"].endswith(".parquet"))
    if tabled != sorted(expected):
        problems.append(f"table objects {tabled} for the stored runs' keys {sorted(expected)}")
    with tempfile.TemporaryDirectory() as folder:
        for key, run in sorted(expected.items()):
            run_id = run["pk"]["S"][len("run#"):]
            if key not in tabled:
                continue
            parquet, csv_path = os.path.join(folder, "t.parquet"), os.path.join(folder, "t.csv")
            stack.s3.download_file(bucket, key, parquet)
            stack.s3.download_file(bucket, run["s3_key"]["S"], csv_path)
            file_rows = duckdb.sql(f"select count(*) from read_parquet('{parquet}')").fetchall()[0][0]
            csv_rows = csv_data_rows(csv_path)
            ledger_rows = int(run["rows"]["N"]) if "rows" in run else None
            if not (ledger_rows == file_rows == csv_rows > 0):
                problems.append(f"{run_id}: rows in the ledger {ledger_rows}, in the table file {file_rows}, "
                                f"in the CSV {csv_rows}")
    left = [u["Key"] for u in stack.open_uploads() if u["Key"].startswith(TABLES_PREFIX)]
    if left:
        print(f"        note: {len(left)} open upload(s) at table keys, left by the kill (S3's lifecycle rule "
              f"aborts them): {left}", flush=True)
    for queue in ("CONVERSION_QUEUE_URL", "CONVERSION_DLQ_URL"):
        depth = stack.queue_depth(stack.env[queue])
        if depth:
            problems.append(f"{queue}: {depth} message(s) left")
    glue = boto3.client("glue", endpoint_url=stack.moto, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    for report_type in report_types:
        name = re.sub("[^a-z0-9]", "_", report_type)
        try:
            table = glue.get_table(DatabaseName=database, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            problems.append(f"no Glue table {database}.{name}")
            continue
        partitions = [k["Name"] for k in table.get("PartitionKeys", [])]
        if partitions != ["account", "date"]:
            problems.append(f"Glue table {name} partitioned by {partitions}, expected account, date")
    return problems


def tables_duplicates_and_crash(stack):
    """15. Duplicate conversion messages and a converter killed mid-conversion
    leave exactly one table file per stored run, with the CSV's rows.

    Tables on (conversion queue, Glue database) for this scenario only; 2
    report types × 2 days, one of them a 30 MiB itemized CSV (seconds to
    convert in the debug build). Three copies of the first stored run's
    conversion message are sent at once, as soon as it is stored; the runner
    is killed (SIGKILL) while a big CSV's conversion is in flight (its
    message received, not deleted; the ledger without its `parquet_key`);
    restarted, with a second runner polling the same queues, the message
    comes back after the visibility timeout and converts, once. Then two
    `again: true` copies of a big run's message, the second sent while the
    first converts (so the other runner converts it side by side), and a
    plain copy of every run's: same keys, same bytes. Then the usual audit
    (table files left to the tables' audit) and the tables'."""
    big, small = THREE_TYPES[1], THREE_TYPES[0]
    stack.begin("15-tables", [kind(big, TABLES_BIG_CSV), kind(small)], lookback_days=2)
    local_aws.create_tables_resources(stack.env, visibility_timeout=VISIBILITY_TIMEOUT,
                                      max_receive_count=MAX_RECEIVE_COUNT, database=TABLES_DATABASE)
    queue = stack.env["CONVERSION_QUEUE_URL"]

    def counts():
        attributes = stack.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def send(bodies):
        stack.sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)])

    runner = stack.start_runner()
    # (a) Duplicates racing the original: 3 copies at once, as soon as a run is stored.
    first = wait_for(lambda: next((r for r in stack.runs() if r["status"]["S"] == "stored"), None), 60,
                     "a first run stored", interval=0.1)
    send([conversion_body(first)] * 3)

    # (b) The kill, while a big CSV converts: a big run stored without its
    # table file, and for 1 s a message in flight all along and no run
    # tabled: one conversion of over a second (a small CSV's takes a tenth,
    # a copy's milliseconds), so a big one.
    def tabled_and_pending():
        runs = [r for r in stack.runs() if r["status"]["S"] == "stored"]
        return ({r["pk"]["S"] for r in runs if "parquet_key" in r},
                [r["pk"]["S"][len("run#"):] for r in runs
                 if r["report_type"]["S"] == big and "parquet_key" not in r])

    def converting_big():
        tabled, pending = tabled_and_pending()
        if not pending or counts()[1] < 1:
            return None
        for _ in range(4):
            time.sleep(0.25)
            if counts()[1] < 1:
                return None
        return pending if tabled_and_pending() == (tabled, pending) else None
    pending = wait_for(converting_big, 60, "a big CSV's conversion in flight for a second", interval=0.1)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    killed_at = time.time()
    runs = {r["pk"]["S"][len("run#"):]: r for r in stack.runs()}
    check(all("parquet_key" not in runs[run_id] for run_id in pending),
          f"{pending} tabled at the kill: not mid-conversion")
    check(counts()[1] >= 1, "no conversion message in flight at the kill")
    stack.start_runner(name="runner-restarted")
    stack.start_runner(name="runner-2", listen=RUNNER_2)

    def all_tabled():
        stored = [r for r in stack.runs() if r["status"]["S"] == "stored"]
        return (stack.settled() and len(stored) == len(stack.planned())
                and all("parquet_key" in r for r in stored) and counts() == (0, 0))
    wait_for(all_tabled, 60, "every stored run tabled and the queues drained")
    # The big runs pending at the kill (the one whose conversion was cut
    # among them, its message back after the visibility timeout) each
    # converted exactly once, by a runner started after the kill.
    written = {run_id: table_files_written(stack, table_key_of(runs[run_id]["s3_key"]["S"]))
               for run_id in pending}
    check(all(len(w) == 1 and w[0][0] != "runner" and w[0][1] >= killed_at for w in written.values()),
          f"the runs pending at the kill written {written} (expected once each, after the restart)")
    killed = pending
    killed_key = table_key_of(runs[killed[0]]["s3_key"]["S"])

    # (a) again: two `again` copies of the killed run's message, the second
    # sent once the first is in flight, so that the other runner takes it
    # (the busy one does not poll): two conversions of one key side by side;
    # and a plain copy of every run's message.
    def table_objects():
        return {o["Key"]: (o["ETag"], o["Size"]) for page in stack.s3.get_paginator("list_objects_v2").paginate(
            Bucket=stack.env["REPORTS_BUCKET"], Prefix=TABLES_PREFIX) for o in page.get("Contents", [])}
    before = table_objects()
    stored = [r for r in stack.runs() if r["status"]["S"] == "stored"]
    send([conversion_body(runs[killed[0]], again=True)])
    wait_for(lambda: counts() == (0, 1), 10, "the first `again` copy in flight", interval=0.05)
    send([conversion_body(runs[killed[0]], again=True)] + [conversion_body(r) for r in stored])
    wait_for(lambda: counts() == (0, 0) and len(table_files_written(stack, killed_key)) >= 3, 60,
             "the copies handled")
    after = table_objects()
    check(after == before, f"table files changed by the copies: {before} → {after}")
    written = {key: len(table_files_written(stack, key)) for key in before}
    check(written[killed_key] == 3 and all(n == 1 for key, n in written.items() if key != killed_key),
          f"table files written per key {written} (expected the killed run's 3 times: once, then the 2 `again`s; "
          f"every other once)")
    (first_runner, first_start, first_end), (second_runner, second_start, _) = table_files_written(
        stack, killed_key)[1:]
    check(first_runner != second_runner and second_start < first_end,
          f"the two `again` conversions were not side by side: {table_files_written(stack, killed_key)[1:]}")
    return stack.audit(expected_requests=len(stack.planned())) + audit_tables(stack, TABLES_DATABASE, [big, small])


def eventbridge_metric_sums(text):
    """The eventbridge function's EMF documents in `text` (namespace
    StripeReports, dimension Function=eventbridge): each metric's sum, and
    how many documents (one per message handled)."""
    sums, documents = {}, 0
    for line in text.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if document.get("Function") != "eventbridge":
            continue
        documents += 1
        for name in ("EventsAccepted", "EventsRejected", "EventsFailed", "FailedRuns"):
            sums[name] = sums.get(name, 0) + document.get(name, 0)
    return sums, documents


def eventbridge_only(stack):
    """16. EventBridge only (webhooks off): every event 3 times, shuffled; one
    delivery failing in the handler (its claim throttled by the ledger)
    comes back from the event queue.

    The emulator's webhooks are off and it sends each event in EventBridge's
    shape, 3 copies (each a new EventBridge event around the same Stripe
    event) spread over 3 s, to the runner's stand-in for the rule and its SQS
    target, which puts them on the event queue; the runner polls it for the
    eventbridge function with SQS batch semantics. The runner's DynamoDB goes
    through `ClaimThrottler`: the first claim of a `report_run.succeeded`
    event is refused `ProvisionedThroughputExceededException` on each of the
    SDK's attempts, so that one message is answered as a batch item failure
    ("ledger unavailable"), stays on the queue and is received again after
    the visibility timeout (10 s). The scheduler ticks once (at start): only
    the events store the runs. Then `report_type.updated` for each type, 3
    copies each, through the schedule queue."""
    types = [kind(t) for t in THREE_TYPES]
    stack.begin("16-eventbridge", types, lookback_days=2, eventbridge=True,
                faults={"webhooks_enabled": False, "webhook_duplicates": 2, "webhook_shuffle_ms": 3000})
    with ClaimThrottler(MOTO_PORT) as throttler:  # until the scenario ends: the runner's DynamoDB
        stack.env = dict(stack.env, AWS_ENDPOINT_URL_DYNAMODB=throttler.url)
        stack.start_runner()  # schedule every hour: the tick at start only
        time.sleep(1.5)
        for t in THREE_TYPES:  # report_type.updated, ×3 each, among the run events
            emulator_json(f"/_emulator/report_types/{t}", {"data_available_end": TODAY})
        # Settled includes the event queue drained: the refused message back
        # after its visibility timeout and handled.
        stack.wait_settled(timeout=120)
        # Late copies (up to 3 s of shuffle) must change nothing.
        time.sleep(4)
        stack.wait_settled(timeout=60)
        return eventbridge_only_checks(stack, throttler) + stack.audit(expected_requests=6)


def eventbridge_only_checks(stack, throttler):
    """Scenario 16's own checks (the audit aside)."""
    check(throttler.without_invocation_id == 0,
          f"{throttler.without_invocation_id} claims came without amz-sdk-invocation-id: one call cannot be told")
    check(throttler.invocation is not None and throttler.refused == len(throttler.attempts) >= 1,
          f"the ledger refused {throttler.refused} requests ({throttler.attempts}) for claim {throttler.event}: "
          f"expected every attempt of one call")
    stats = emulator_json("/_emulator/stats")
    # One event per run (6) and one per report_type.updated (3).
    check(stats["events"] == stats["runs_created"] + 3 == 9,
          f"{stats['events']} events for {stats['runs_created']} runs and 3 report_type.updated")
    check(stats["webhook_deliveries"] == 0, f"{stats['webhook_deliveries']} webhooks delivered")
    problems = stack.webhooks_accepted(copies_per_event=3, channel="eventbridge")

    # The one delivery refused by the ledger: reported failed, received
    # again (its receive count above 1) and handled then (the queue and its
    # DLQ are empty: a message is deleted only when not reported failed).
    log = stack.log_text("runner").splitlines()
    failed = [(i, line) for i, line in enumerate(log)
              if "event not handled; SQS will deliver it again" in line and "reason=ledger unavailable" in line]
    check(len(failed) == 1, f"{len(failed)} deliveries not handled for the ledger (expected the one refused): "
                            f"{[line[-200:] for _, line in failed]}")
    index, line = failed[0]
    message = re.search(r"message_id=(\S+)", line).group(1)
    again = [other for other in log[index + 1:]
             if "message delivered again" in other and f"message_id={message} " in other + " "]
    check(again and re.search(r"receive_count=([2-9]|\d\d)", again[0]),
          f"message {message} (refused by the ledger) was never received again: {again[:1]}")
    refused = [line for line in log if "EventBridge event refused" in line or "event refused:" in line]
    check(not refused, f"EventBridge events refused: {refused[:1]}")
    # Every copy accepted once in the end (its message deleted then), each
    # failed receive counted as failed: EventsAccepted = the copies delivered.
    sums, documents = eventbridge_metric_sums("\n".join(log))
    deliveries = 3 * stats["events"]
    check(sums.get("EventsAccepted") == deliveries and sums.get("EventsRejected") == 0
          and sums.get("EventsFailed", 0) >= 1 and documents == deliveries + sums.get("EventsFailed", 0),
          f"eventbridge metrics {sums} over {documents} messages handled, for {deliveries} copies delivered")
    print(f"        note: claim of {throttler.event} throttled on the SDK's "
          f"{', '.join(a.split(';')[0] for a in throttler.attempts)}; message {message} received again ({again[0].rsplit(' ', 1)[-1]}); "
          f"{int(sums['EventsFailed'])} receive(s) failed in all", flush=True)
    return problems


SCENARIOS = [webhooks_five_times_shuffled, scheduler_five_times, downloader_killed_mid_stream, stripe_429_storm,
             truncated_twice, s3_unavailable_mid_upload, webhooks_never_delivered, run_failed_at_stripe,
             secret_rolled, redirect_off_the_allow_list, malformed_inputs, orphan_not_created_twice,
             overdue_reported_then_healed, two_accounts_one_failing, tables_duplicates_and_crash,
             eventbridge_only]


# Every scenario leaves at least a dozen log lines (the emulator's start, the
# runner's or the invocations' lines; most leave far more); fewer means the
# scan read the wrong place or the logs are missing, and a clean scan of
# nothing proves nothing.
MIN_LOG_LINES_PER_SCENARIO = 8


def scan_logs(scenarios):
    """No captured log line carries the API key or a webhook secret (nor the
    random part of one, in case it was cut or re-encoded). Returns the places
    found and the problems of the scan itself: moto's log and each scenario's
    folder must be there and hold at least a floor of lines, or a clean scan
    means nothing."""
    needles = []
    for value in SECRETS_TO_HIDE:
        needles += [value, value.rsplit("_", 1)[1]]
    problems = [] if len(needles) == 2 * len(SECRETS_TO_HIDE) > 0 and all(needles) else ["nothing to look for"]
    moto_log = os.path.join(ROOT, ".local", "moto.log")
    paths = [moto_log] if os.path.exists(moto_log) else []
    for folder, _, files in os.walk(LOGS):
        paths += [os.path.join(folder, f) for f in files]
    found, lines, per_folder = [], 0, {}
    for path in paths:
        with open(path, errors="replace") as log:
            for number, line in enumerate(log, 1):
                lines += 1
                per_folder[os.path.dirname(path)] = per_folder.get(os.path.dirname(path), 0) + 1
                if any(n in line for n in needles):
                    found.append(f"{os.path.relpath(path, ROOT)}:{number}")
    if moto_log not in paths:
        problems.append("no moto log (.local/moto.log)")
    folders = [os.path.join(LOGS, slug) for slug in scenarios]
    thin = [f"{os.path.basename(f)} ({per_folder.get(f, 0)} lines)" for f in folders
            if per_folder.get(f, 0) < MIN_LOG_LINES_PER_SCENARIO]
    if not folders or thin:
        problems.append(f"too few log lines to scan (at least {MIN_LOG_LINES_PER_SCENARIO} per scenario): "
                        f"{', '.join(thin) or 'no scenario ran'}")
    return found, problems, lines, len(paths)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 3,6")
    args = parser.parse_args()
    chosen = list(enumerate(SCENARIOS, 1))
    if args.only is not None:
        wanted = [part.strip() for part in args.only.split(",")]
        known = {str(n) for n, _ in chosen}
        unknown = [part for part in wanted if part not in known]
        if unknown or not wanted:
            print(f"reliability.py: --only {args.only!r}: no scenario {', '.join(unknown) or '(none given)'}; "
                  f"scenarios are 1-{len(SCENARIOS)} (the log scan, {len(SCENARIOS) + 1}, always runs)",
                  file=sys.stderr)
            return 2
        chosen = [(n, s) for n, s in chosen if str(n) in wanted]
    if os.path.isdir(LOGS):
        for folder, _, files in os.walk(LOGS):
            for f in files:
                os.remove(os.path.join(folder, f))
    os.makedirs(LOGS, exist_ok=True)
    endpoint, moto = local_aws.start_moto(MOTO_PORT)
    passed = failed = 0
    started_all = time.time()
    stack = None
    try:
        stack = Stack(endpoint)
        for number, scenario in chosen:
            # The docstring's first paragraph, without its number.
            title = " ".join(scenario.__doc__.split("\n\n")[0].split()).split(". ", 1)[-1]
            started = time.time()
            try:
                problems = scenario(stack)
            except Failed as err:
                problems = [str(err)]
            except Exception:  # noqa: BLE001 - a crash of the suite is a failure too
                problems = ["suite error: " + traceback.format_exc().strip().splitlines()[-1]]
                traceback.print_exc(file=open(os.path.join(LOGS, "suite-errors.log"), "a"))
            finally:
                stack.end()
            ok = not problems
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'} {number:>2}. {title} ({time.time() - started:.1f} s)",
                  flush=True)
            for problem in problems:
                print(f"        {problem}", flush=True)
    finally:
        local_aws.stop(moto)
    found, problems, lines, files = scan_logs(stack.slugs if stack else [])
    ok = not found and not problems
    passed, failed = passed + ok, failed + (not ok)
    print(f"{'PASS' if ok else 'FAIL'} {len(SCENARIOS) + 1:>2}. Security: no API key or webhook secret in any "
          f"captured log line ({lines} lines in {files} files)")
    for problem in problems:
        print(f"        {problem}")
    for where in found[:20]:
        print(f"        secret found at {where}")
    print(f"\n{passed} passed, {failed} failed ({time.time() - started_all:.0f} s; logs in {os.path.relpath(LOGS, ROOT)}/)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
