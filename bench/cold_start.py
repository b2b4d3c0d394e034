"""3. Cold start: process start to the first Runtime API `next` of every
Lambda function template.yaml deploys, beside its floor built in the same run
(bench/hello-lambda: the functions' AWS configuration, one Secrets Manager
read, then lambda_runtime), and the first invocation of each: one cheap
event that needs nothing beyond moto and the emulator."""
import copy
import hashlib
import hmac
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zipfile

import local_aws
from common import EMULATOR, KEY, MIB, RELEASE, ROOT, emulator, finished_run, goal_cell, log, stripe_api

COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "15"))

NAME = "cold-start"
TITLE = "Cold start"
NEEDS_AWS = True

FLOOR = "hello-lambda"
# Every function of template.yaml, in the order a report goes through them.
FUNCTIONS = ("scheduler", "webhook", "eventbridge", "downloader", "converter")
GOAL = 1.2  # issue #18: each function's cold start within 1.2× the floor
REPORT_TYPE = "balance.summary.1"
WEBHOOK_SECRET = "whsec_bench"
EVENT_SOURCE = "aws.partner/stripe.com/ed_bench"


class QuietServer(http.server.ThreadingHTTPServer):
    """A connection the killed function left is expected at the end of each
    cold start: not worth a traceback. Anything else is still printed."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RuntimeApi:
    """The Lambda Runtime API as far as a cold start and its first
    invocation go: the first `GET …/invocation/next` is noted when it arrives
    and answered with the event given; the answer (`…/response` or
    `…/error`) is noted when it has arrived whole. A later `next` is held
    open (a long poll with nothing to hand out) until the process is stopped."""

    def __init__(self):
        self.lock = threading.Lock()
        self.asked = threading.Event()
        self.answered = threading.Event()
        self.stopped = threading.Event()
        self.event = None
        self.asked_at = self.sent_at = self.answered_at = None
        self.answer = None
        self.server = None
        self.serve()

    def serve(self):
        """A fresh server on a fresh port, for one process: a request the
        previous (killed) process still had in flight reaches the old
        server, whose handlers no longer touch this state, and can never be
        taken for the new process's first `next`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        api = self
        current = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime keeps its connection

            def stale(self):
                if current.get("server") is not api.server:
                    self.close_connection = True
                    return True
                return False

            def do_GET(self):  # noqa: N802 - the http.server API
                if self.stale():
                    return
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                with api.lock:
                    first = not api.asked.is_set()
                    if first:
                        api.asked_at = time.perf_counter()
                        api.asked.set()
                    event = api.event if first else None
                if event is None:
                    api.stopped.wait(30)
                    self.close_connection = True
                    return
                body = json.dumps(event).encode()
                api.sent_at = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:123456789012:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                if self.stale():
                    return
                body = self.read_body()
                if "/runtime/invocation/" in self.path:
                    api.answered_at = time.perf_counter()
                    api.answer = (self.path.rsplit("/", 1)[-1], body.decode(errors="replace"))
                    api.answered.set()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def read_body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            # Trailers, if any, end with an empty line.
                            while chunk not in (b"", b"\r\n"):
                                chunk = self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        current["server"] = self.server
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def cold_start(self, binary, env, event):
        """Starts `binary`, hands it `event` at its first `next`: (ms from
        process start to that `next`, ms from sending the event to the
        answer arriving, (`response` or `error`, answer body))."""
        self.serve()
        env = dict(env, AWS_LAMBDA_RUNTIME_API=self.address)
        with self.lock:
            self.asked.clear()
            self.answered.clear()
            self.stopped.clear()
            self.event = event
            self.answer = None
        started = time.perf_counter()
        process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not self.asked.wait(20) or not self.answered.wait(60):
                process.kill()
                raise RuntimeError(f"{os.path.basename(binary)}: no {'answer' if self.asked.is_set() else 'next'}: "
                                   f"{process.stderr.read(2000).decode(errors='replace')}")
            return (self.asked_at - started) * 1000, (self.answered_at - self.sent_at) * 1000, self.answer
        finally:
            process.kill()
            process.wait()
            self.stopped.set()


def sqs_event(body, source_queue):
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "bench", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{source_queue}", "awsRegion": "us-east-1"}]}


def stripe_event(run):
    """A `reporting.report_run.succeeded` event of `run` (a fresh event id each time)."""
    return {"id": f"evt_bench{uuid.uuid4().hex[:16]}", "object": "event", "api_version": "2026-07-29.dahlia",
            "created": int(time.time()), "type": "reporting.report_run.succeeded", "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "data": {"object": run}}


def webhook_event(run):
    """API Gateway's (HTTP API) event of Stripe delivering `run`'s event, signed now."""
    with open(os.path.join(ROOT, "events", "webhook-report-run-succeeded.json")) as sample:
        event = json.load(sample)
    body = json.dumps(stripe_event(run))
    now = int(time.time())
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
    event["headers"]["stripe-signature"] = f"t={now},v1={signature}"
    event["body"] = body
    event["isBase64Encoded"] = False
    event["requestContext"]["timeEpoch"] = now * 1000
    return event


def eventbridge_event(run):
    """The SQS message the stack's EventBridge rule makes of `run`'s event."""
    detail = stripe_event(run)
    envelope = {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail["type"], "source": EVENT_SOURCE,
                "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "region": "us-east-1", "resources": [], "detail": detail}
    return sqs_event(json.dumps(envelope), "stripe-reports-events")


def answer_problem(name, answer):
    """Why `answer` is not a success of `name`'s event, or None."""
    kind, body = answer
    if kind != "response":
        return f"{kind}: {body[:500]}"
    value = json.loads(body) if body else None
    if name == "webhook":
        return None if value.get("statusCode") == 200 else body[:500]
    if isinstance(value, dict) and value.get("batchItemFailures"):
        return body[:500]
    return None


def bench_cold_start(aws_env):
    api = RuntimeApi()
    aws_env = dict(aws_env)
    local_aws.create_tables_resources(aws_env)  # the converter's queue and Glue database
    (secrets,) = local_aws.clients(aws_env, "secretsmanager")
    arn = secrets.create_secret(Name=f"bench-{time.time_ns()}",
                                SecretString=json.dumps({"api_key": KEY, "webhook_secret": WEBHOOK_SECRET}))["ARN"]
    lambda_env = dict(aws_env, AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME="bench",
                      AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                      AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/bench", AWS_LAMBDA_LOG_STREAM_NAME="bench",
                      STRIPE_SECRET_ARN=arn, STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
                      REPORTS=json.dumps([{"report_type": REPORT_TYPE}]), RUST_LOG="warn")
    results = {}
    # A cold start asks Stripe whose key it holds (`GET /v1/account`, SPEC
    # "Accounts"): the emulator answers it, as Stripe would.
    with emulator([{"id": REPORT_TYPE}], run_delay_ms=10):
        account = stripe_api("GET", "/v1/account")["id"]
        run_id, _, _ = finished_run(REPORT_TYPE)
        run = stripe_api("GET", f"/v1/reporting/report_runs/{run_id}")
        stored = []  # the runs the downloader stored, for the converter

        def downloaded():
            fresh, _, _ = finished_run(REPORT_TYPE)
            stored.append(fresh)
            return sqs_event(json.dumps({"run_id": fresh, "account": account}), "stripe-reports-download")

        day = int(time.time()) // 86400 * 86400
        # Each function's first event: (what it is, a maker of one).
        events = {
            FLOOR: ("its event echoed", lambda: {"bench": True}),
            "scheduler": (f"a schedule-queue message for {REPORT_TYPE} (its runs already requested by the "
                          "warm-up: ledger reads, one Stripe list)",
                          lambda: sqs_event(json.dumps({"report_type": REPORT_TYPE, "data_available_end": day,
                                                        "account": account}), "stripe-reports-schedule")),
            "webhook": ("a signed `reporting.report_run.succeeded` (ledger claim, download message sent)",
                        lambda: webhook_event(run)),
            "eventbridge": ("the same event from EventBridge, through its SQS queue",
                            lambda: eventbridge_event(run)),
            "downloader": (f"a download message for a fresh finished {REPORT_TYPE} run (Stripe read, file "
                           "streamed to S3, ledger, conversion message)", downloaded),
            "converter": ("a conversion message (`again`) for a run the downloader stored (S3 read, Parquet "
                          "written to S3, Glue partition, ledger)",
                          lambda: sqs_event(json.dumps({"run_id": stored[0], "account": account, "again": True}),
                                            "stripe-reports-conversion")),
        }
        for name in (FLOOR, *FUNCTIONS):
            binary = os.path.join(RELEASE, name)
            log(f"cold start: {name} × {COLD_STARTS}")
            make_event = events[name][1]
            starts, firsts = [], []
            # The first run warms the page cache, as on a warm Lambda host.
            for index in range(COLD_STARTS + 1):
                start, first, answer = api.cold_start(binary, lambda_env, copy.deepcopy(make_event()))
                problem = answer_problem(name, answer)
                if problem:
                    raise RuntimeError(f"cold start: {name}'s first event failed: {problem}")
                if index:
                    starts.append(start)
                    firsts.append(first)
            zipped = os.path.join(ROOT, ".local", f"{name}.zip")
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(binary, "bootstrap")
            results[name] = (percentiles(starts), percentiles(firsts),
                             os.path.getsize(binary) / MIB, os.path.getsize(zipped) / MIB)
    api.server.shutdown()
    floor = results[FLOOR][0][0]
    table = [f"| binary | cold start median ms | p90 ms | / floor | goal holds (≤ {GOAL:g}×) "
             "| first invocation median ms | p90 ms | first event | stripped size MiB | zip size MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, ((median, p90), (first, first_p90), size, zipped) in results.items():
        ratio = median / floor
        goal = "— (floor)" if name == FLOOR else goal_cell(ratio <= GOAL)
        table.append(f"| {name} | {median:.1f} | {p90:.1f} | {ratio:.2f}× | {goal} | {first:.1f} | {first_p90:.1f} "
                     f"| {events[name][0]} | {size:.1f} | {zipped:.1f} |")
    return table


def percentiles(samples):
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def measure(aws_env):
    return bench_cold_start(aws_env) + ["", NOTE]


NOTE = (
    f"Process start to the first `GET …/runtime/invocation/next` at a Runtime API in bench/cold_start.py, median "
    f"and p90 of {COLD_STARTS} after one warm-up, each function with the template's five binaries' environment "
    "against moto and the emulator. **The floor** (bench/hello-lambda) is what any function that needs its secret "
    "does before its first `next`: the functions' own SDK configuration (`stripe_reports::aws::load_sdk_config`: "
    "the same SDK crates, features and shared HTTPS client), one `GetSecretValue` of `STRIPE_SECRET_ARN`, then "
    "`lambda_runtime::run`. **First invocation**: from the Runtime API sending the event to the function's answer "
    "arriving; moto's Python answers most of it. **Where a cold start went** (strace of the functions before this "
    "change, one run, 2 shared CPUs): root certificates read from disk and parsed three times (≈3 ms each: the "
    "SDK's, then each of the Stripe client's two reqwest clients through rustls-platform-verifier), the system's "
    "roots parsed again for every SDK client built (the SDK builds and drops a TLS configuration per client to "
    "check it, and each client had its own HTTPS client and pool), the Secrets Manager read, and the "
    "`GET /v1/account` round trip. Now: the SDK reads the system's roots once, at its first request, through one "
    "HTTPS client shared by every SDK client (`aws::http`); the Stripe client trusts Mozilla's roots compiled in "
    "(`webpki-roots`, one rustls configuration for both reqwest clients), as Stripe's own libraries ship their CA "
    "bundle, so nothing is read from disk for it; and the key check (`GET /v1/account`) runs while the runtime is "
    "asked for the first event, each invocation waiting for its answer, a key of another account still stopping "
    "the function with one line. The converter reads no secret, so it starts below the floor. x86_64 here: this "
    "machine has no aarch64 Rust target (rustup cannot download it), so the zip column is x86_64, not arm64."
)
