"""3. Cold start: process start to the first Runtime API `next`."""
import http.server
import json
import os
import statistics
import subprocess
import threading
import time
import zipfile

from common import EMULATOR, KEY, MIB, RELEASE, ROOT, emulator, log

NAME = "cold-start"
TITLE = "Cold start"
NEEDS_AWS = True
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "15"))


class RuntimeApi:
    """The part of the Lambda Runtime API a cold start reaches: it notes when
    `GET /2018-06-01/runtime/invocation/next` arrives and never answers."""

    def __init__(self):
        self.arrived = threading.Event()
        self.at = None
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                if self.path.endswith("/runtime/invocation/next") and not api.arrived.is_set():
                    api.at = time.perf_counter()
                    api.arrived.set()
                time.sleep(5)  # a long poll with nothing to hand out

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cold_start(self, binary, env):
        self.arrived.clear()
        started = time.perf_counter()
        process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not self.arrived.wait(20):
                raise RuntimeError(f"{os.path.basename(binary)} never asked for an event: "
                                   f"{process.stderr.read(2000) if process.poll() is not None else ''}")
            return (self.at - started) * 1000
        finally:
            process.kill()
            process.wait()


def bench_cold_start(aws_env):
    api = RuntimeApi()
    import boto3
    secrets = boto3.client("secretsmanager", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = secrets.create_secret(Name=f"bench-{time.time_ns()}",
                                SecretString=json.dumps({"api_key": KEY, "webhook_secret": "whsec_bench"}))["ARN"]
    lambda_env = dict(aws_env, AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME="bench",
                      AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
                      AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/bench", AWS_LAMBDA_LOG_STREAM_NAME="bench",
                      STRIPE_SECRET_ARN=arn, STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
                      REPORTS='[{"report_type": "balance.summary.1"}]', RUST_LOG="warn")
    table = ["| binary | cold start median ms | p90 ms | / hello-world | stripped size MiB | zip size MiB |",
             "|---|---|---|---|---|---|"]
    results = {}
    # A cold start asks Stripe whose key it holds (`GET /v1/account`, SPEC
    # "Accounts"): the emulator answers it, as Stripe would.
    with emulator([{"id": "balance.summary.1"}], run_delay_ms=10):
        for name in ("hello-lambda", "scheduler", "webhook", "downloader"):
            binary = os.path.join(RELEASE, name)
            log(f"cold start: {name} × {COLD_STARTS}")
            api.cold_start(binary, lambda_env)  # page cache warm, as on a warm Lambda host
            samples = sorted(api.cold_start(binary, lambda_env) for _ in range(COLD_STARTS))
            zipped = os.path.join(ROOT, ".local", f"{name}.zip")
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(binary, "bootstrap")
            results[name] = (statistics.median(samples), samples[int(len(samples) * 0.9) - 1],
                             os.path.getsize(binary) / MIB, os.path.getsize(zipped) / MIB)
    hello = results["hello-lambda"][0]
    for name, (median, p90, size, zipped) in results.items():
        table.append(f"| {name} | {median:.1f} | {p90:.1f} | {median / hello:.1f}× | {size:.1f} | {zipped:.1f} |")
    api.server.shutdown()
    return table


def measure(aws_env):
    return bench_cold_start(aws_env) + ["", NOTE]


NOTE = f'Process start to the first `GET …/runtime/invocation/next` at a Runtime API in bench/run.py; median of {COLD_STARTS} after one warm-up. The three functions read their configuration and the Stripe secret from Secrets Manager (moto) first, as on Lambda; hello-world reads nothing. x86_64 here: this machine has no aarch64 Rust target (rustup cannot download it), so the zip column is x86_64, not arm64.'
