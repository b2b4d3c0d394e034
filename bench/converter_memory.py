#!/usr/bin/env python3
"""The converter function end to end, as Lambda runs it: one conversion
message for a stored emulator CSV of 10 MiB, 100 MiB and 1 GiB, read from
moto's S3, written back as its table file through a multipart upload, the
Glue table and the ledger updated — in a fresh release process each
(`stripe-reports invoke converter`, the same handler and SDK clients as the
Lambda binary). Reports the process's peak RSS (wait4's ru_maxrss of that
child alone), wall time and the table file's size, to show what memory the
function needs (SPEC "Tables": a 1 GiB CSV inside a 128 MB function).

    make bench-converter               # builds both release binaries, starts moto; or:
    .venv/bin/python scripts/local_aws.py run -- .venv/bin/python bench/converter_memory.py [MiB ...]

Uses target/release/stripe-reports and target/release/examples/convert_rss
(which writes the emulator's CSV of each size).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import local_aws  # noqa: E402
from common import RELEASE, peak_rss_and_cpu  # noqa: E402 - bench/ is this script's folder

ACCOUNT = "acct_1EmulatorDefault00"
REPORT_TYPE = "balance_change_from_activity.itemized.3"
PREFIX = "stripe/"
MIB = 1024 * 1024


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def main(sizes):
    cli, generator = os.path.join(RELEASE, "stripe-reports"), os.path.join(RELEASE, "examples", "convert_rss")
    for binary in (cli, generator):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is missing: cargo build --release -p cli && "
                     "cargo build --release -p tables --example convert_rss")
    env = dict(os.environ)
    local_aws.create_tables_resources(env, database="stripe_reports_memory")
    kwargs = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    s3, dynamodb = boto3.client("s3", **kwargs), boto3.client("dynamodb", **kwargs)
    bucket, table = env["REPORTS_BUCKET"], env["RUNS_TABLE"]
    env.update({"REPORTS_PREFIX": PREFIX, "RUST_LOG": "warn"})
    rows = []
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, ".local") if os.path.isdir(os.path.join(ROOT, ".local")) else None) as work:
        for size in sizes:
            csv = os.path.join(work, f"report-{size}.csv")
            subprocess.run([generator, "--generate", str(size), csv, "--emulator"], check=True,
                           stdout=subprocess.DEVNULL)
            run_id = f"frr_ConverterMemory{size:06d}"
            key = f"{PREFIX}account={ACCOUNT}/report_type={REPORT_TYPE}/date=2026-11-01/{run_id}.csv"
            s3.upload_file(csv, bucket, key)
            now = int(time.time())
            dynamodb.put_item(TableName=table, Item={
                "pk": {"S": f"run#{run_id}"}, "status": {"S": "stored"}, "account": {"S": ACCOUNT},
                "report_type": {"S": REPORT_TYPE}, "s3_key": {"S": key},
                "bytes": {"N": str(os.path.getsize(csv))}, "sha256": {"S": sha256(csv)},
                "file_id": {"S": f"file_{run_id}"}, "created": {"N": str(now)}, "updated": {"N": str(now)},
            })
            os.remove(csv)
            event = os.path.join(work, "event.json")
            body = json.dumps({"run_id": run_id, "account": ACCOUNT})
            with open(event, "w") as f:
                json.dump({"Records": [{"messageId": f"m{size}", "receiptHandle": "r", "body": body,
                                        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}]}, f)
            seconds, _, peak, answer = peak_rss_and_cpu([cli, "invoke", "converter", "--event", event], env=env)
            # The answer is the last line (log lines may come first).
            if json.loads(answer.strip().splitlines()[-1]).get("batchItemFailures"):
                sys.exit(f"the conversion of {size} MiB failed: {answer}")
            item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"run#{run_id}"}}, ConsistentRead=True)["Item"]
            parquet = s3.head_object(Bucket=bucket, Key=item["parquet_key"]["S"])["ContentLength"]
            rows.append((size, seconds, peak, int(item["rows"]["N"]), parquet))
            print(f"{size} MiB: {seconds:.1f} s, peak RSS {peak:.1f} MiB, {item['rows']['N']} rows, "
                  f"table file {parquet / MIB:.1f} MiB", flush=True)
    print("\n| CSV | wall | MiB/s | peak RSS of the converter process | rows | table file |")
    print("|---|---|---|---|---|---|")
    for size, seconds, peak, count, parquet in rows:
        print(f"| {size} MiB | {seconds:.1f} s | {size / seconds:.1f} | {peak:.1f} MiB | {count:,} | {parquet / MIB:.1f} MiB |")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 100, 1024])
