#!/usr/bin/env python3
"""What reconcile and `stripe-reports status` read from a ledger with years
of history. Reconcile: the old full scan (filter on status) against the
sparse `unfinished` index, on the same moto table; DynamoDB bills a Scan by
the items it reads (ScannedCount), not by the ones the filter keeps, so the
figure that matters is items read per reconcile. Status: `stripe-reports
status` (release build if present, else debug) over N specs × D days on the
same table: point reads of those intervals only; its wall time in moto.

    .venv/bin/python scripts/local_aws.py run -- .venv/bin/python bench/ledger_index.py [--stored 100000]
"""
import argparse
import os
import time
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The account every item belongs to (the ledger keys and the index are per account).
ACCOUNT = "acct_1EmulatorDefault00"

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--stored", type=int, default=100_000, help="finished run items (years of history)")
parser.add_argument("--unfinished", type=int, default=40, help="pending and succeeded run items")
parser.add_argument("--specs", type=int, default=20, help="report specs `status` reports on")
parser.add_argument("--days", type=int, default=30, help="days of intervals `status` reports on")
args = parser.parse_args()

dynamodb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
table = f"ledger-index-bench-{uuid.uuid4().hex[:8]}"
dynamodb.create_table(
    TableName=table,
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                          {"AttributeName": "unfinished", "AttributeType": "S"}],
    GlobalSecondaryIndexes=[{"IndexName": "unfinished",
                             "KeySchema": [{"AttributeName": "unfinished", "KeyType": "HASH"}],
                             "Projection": {"ProjectionType": "ALL"}}],
    BillingMode="PAY_PER_REQUEST",
)


def item(n, status):
    item = {"pk": {"S": f"run#frr_{n:09d}"}, "status": {"S": status}, "account": {"S": ACCOUNT},
            "report_type": {"S": "balance_change_from_activity.itemized.3"},
            "interval_start": {"N": str(1_600_000_000 + n * 86400)},
            "interval_end": {"N": str(1_600_086_400 + n * 86400)},
            "created": {"N": "1600000000"}, "updated": {"N": "1600000000"},
            "request_key": {"S": f"request#{ACCOUNT}#balance_change_from_activity.itemized.3#{n}#{n + 1}#0123456789abcdef"}}
    if status in ("pending", "succeeded"):
        item["unfinished"] = {"S": ACCOUNT}
    else:
        item.update({"s3_key": {"S": f"stripe/account={ACCOUNT}/report_type=x/date=2020-01-01/frr_{n:09d}.csv"},
                     "bytes": {"N": "123456"}, "sha256": {"S": "0" * 64}, "file_id": {"S": "file_x"}})
    return item


started = time.time()
statuses = ["stored"] * args.stored + ["pending", "succeeded"] * (args.unfinished // 2)
batch = []
for n, status in enumerate(statuses):
    batch.append({"PutRequest": {"Item": item(n, status)}})
    if len(batch) == 25:
        dynamodb.batch_write_item(RequestItems={table: batch})
        batch = []
if batch:
    dynamodb.batch_write_item(RequestItems={table: batch})
print(f"loaded {len(statuses)} run items in {time.time() - started:.0f} s")


def scan_filter():
    read = kept = 0
    kwargs = {"TableName": table, "FilterExpression": "begins_with(pk, :run) AND #s IN (:p, :s)",
              "ExpressionAttributeNames": {"#s": "status"},
              "ExpressionAttributeValues": {":run": {"S": "run#"}, ":p": {"S": "pending"}, ":s": {"S": "succeeded"}},
              "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        read += page["ScannedCount"]
        kept += page["Count"]
        if "LastEvaluatedKey" not in page:
            return read, kept
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def query_index():
    read = kept = 0
    kwargs = {"TableName": table, "IndexName": "unfinished", "KeyConditionExpression": "#u = :one",
              "ExpressionAttributeNames": {"#u": "unfinished"},
              "ExpressionAttributeValues": {":one": {"S": ACCOUNT}}}
    while True:
        page = dynamodb.query(**kwargs)
        read += page["ScannedCount"]
        kept += page["Count"]
        if "LastEvaluatedKey" not in page:
            return read, kept
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


print(f"{'read':<28}{'items read':>12}{'runs found':>12}{'seconds (moto)':>16}")
for name, read_runs in (("scan + filter (before)", scan_filter), ("sparse index query (now)", query_index)):
    started = time.time()
    read, kept = read_runs()
    print(f"{name:<28}{read:>12}{kept:>12}{time.time() - started:>16.2f}")

# `stripe-reports status` on the same table: N daily specs (one per report
# type) over the last D days, beside the history above.
import json  # noqa: E402
import subprocess  # noqa: E402

DAY = 86400
now = int(time.time())
today = now - now % DAY
binary = next((p for p in (os.path.join(ROOT, "target", kind, "stripe-reports") for kind in ("release", "debug"))
               if os.path.exists(p)), None)
types = [f"bench.status{n}.1" for n in range(args.specs)]
spec_json = json.dumps([{"report_type": t} for t in types])
print(f"status: {len(types)} specs x {args.days} days = {len(types) * args.days} intervals")
if binary is None:
    print("status: no stripe-reports binary (cargo build -p cli first)")
else:
    env = dict(os.environ, RUNS_TABLE=table, REPORTS=spec_json, LOOKBACK_DAYS=str(args.days), RUST_LOG="warn")
    # Every interval due (availability recorded) and never requested: one
    # request-key read each. (A stored interval costs one more, its run item.)
    for t in types:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"available#{ACCOUNT}#{t}"},
                                                  "first_seen": {"M": {str(today): {"N": str(now - 3600)}}}})
    started = time.time()
    # The account named: status reads the ledger only (no key, no Stripe call).
    result = subprocess.run([binary, "status", "--json", "--account", ACCOUNT], env=env, capture_output=True,
                            text=True)
    took = time.time() - started
    report = json.loads(result.stdout)
    intervals = sum(len(s["not_stored"]) + (1 if s["last_stored"] else 0) for s in report["specs"])
    print(f"status: exit {result.returncode}, {intervals} intervals reported, {took:.2f} s "
          f"({len(types) * args.days} request-key reads; none of the {args.stored} history items read)")
dynamodb.delete_table(TableName=table)
