#!/usr/bin/env python3
"""Local AWS for tests and the demo: moto's server on loopback.

    scripts/local_aws.py run -- COMMAND...   start moto, create the resources SPEC names,
                                             run COMMAND with their environment, stop moto
    scripts/local_aws.py serve               the same, until interrupted

Resources (names overridable by the same environment variables the functions read):
RUNS_TABLE (pk string, TTL expires_at, the sparse `unfinished` index), REPORTS_BUCKET, DOWNLOAD_QUEUE_URL,
SCHEDULE_QUEUE_URL and EVENTBRIDGE_QUEUE_URL (the queue the stack's EventBridge rule targets, which
`stripe-reports local` fills from `POST /eventbridge/events`; each with a DLQ, maxReceiveCount 5). The port comes from
MOTO_PORT (default 5000). If a moto server already answers on that port it is
reused and left running; a server this script started is always stopped.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "RUNS_TABLE": "stripe-reports-runs",
    "REPORTS_BUCKET": "stripe-reports-local",
}


def moto_alive(endpoint):
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1) as response:
            return response.status == 200
    except Exception:
        return False


def port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_moto(port):
    endpoint = f"http://127.0.0.1:{port}"
    if moto_alive(endpoint):
        return endpoint, None
    if port_busy(port):
        sys.exit(f"local_aws: port {port} is taken by something that is not moto (set MOTO_PORT)")
    # moto's server with DynamoDB's conditional writes made atomic, as they
    # are at AWS (see moto_serialized.py).
    moto = [sys.executable, os.path.join(HERE, "moto_serialized.py")]
    log = open(os.path.join(ROOT, ".local", "moto.log"), "ab")
    process = subprocess.Popen(
        moto + ["-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"local_aws: moto exited with {process.returncode} (see .local/moto.log)")
        if moto_alive(endpoint):
            return endpoint, process
        time.sleep(0.2)
    stop(process)
    sys.exit("local_aws: moto did not answer within 30 s (see .local/moto.log)")


def stop(process):
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def clients(env, *services):
    """boto3 clients of `services` for moto's server in `env`."""
    import boto3

    kwargs = dict(
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return [boto3.client(service, **kwargs) for service in services]


def queue_with_dlq(sqs, name, visibility_timeout, max_receive_count):
    """A queue whose messages move to `<name>-dlq` after `max_receive_count`
    receives, as in template.yaml: (queue URL, DLQ URL)."""
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return url, dlq


def create_resources(env, visibility_timeout=30, max_receive_count=5):
    dynamodb, s3, sqs = clients(env, "dynamodb", "s3", "sqs")
    table = env["RUNS_TABLE"]
    if table not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "unfinished", "AttributeType": "S"}],
            # The sparse index of unfinished runs, as in template.yaml.
            GlobalSecondaryIndexes=[{
                "IndexName": "unfinished",
                "KeySchema": [{"AttributeName": "unfinished", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    s3.create_bucket(Bucket=env["REPORTS_BUCKET"])
    for var, name in (("DOWNLOAD_QUEUE_URL", "stripe-reports-download"),
                      ("SCHEDULE_QUEUE_URL", "stripe-reports-schedule"),
                      ("EVENTBRIDGE_QUEUE_URL", "stripe-reports-events")):
        if env.get(var):
            continue
        env[var], env[var.replace("_URL", "_DLQ_URL")] = queue_with_dlq(
            sqs, name, visibility_timeout, max_receive_count)


def create_tables_resources(env, visibility_timeout=30, max_receive_count=5, database="stripe_reports"):
    """The converter's resources (SPEC "Tables"): the conversion queue with
    its DLQ (CONVERSION_QUEUE_URL, CONVERSION_DLQ_URL) and the Glue database
    (GLUE_DATABASE). Not part of `create_resources`: a stack without them
    makes no table files, which is what the tests of the other functions want."""
    sqs, glue = clients(env, "sqs", "glue")
    env["CONVERSION_QUEUE_URL"], env["CONVERSION_DLQ_URL"] = queue_with_dlq(
        sqs, f"stripe-reports-conversion-{database}", visibility_timeout, max_receive_count)
    try:
        glue.create_database(DatabaseInput={"Name": database})
    except glue.exceptions.AlreadyExistsException:
        pass
    env["GLUE_DATABASE"] = database


def main(argv):
    if len(argv) < 2 or argv[1] not in ("run", "serve"):
        sys.exit(__doc__)
    os.makedirs(os.path.join(ROOT, ".local"), exist_ok=True)
    port = int(os.environ.get("MOTO_PORT", "5000"))
    env = dict(os.environ)
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    endpoint, process = start_moto(port)
    env["AWS_ENDPOINT_URL"] = endpoint
    # Stop moto on SIGTERM/SIGINT too (CI cancels, Ctrl-C).
    def on_signal(signum, _frame):
        stop(process)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        create_resources(env)
        with open(os.path.join(ROOT, ".local", "aws.env"), "w") as out:
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                         "RUNS_TABLE", "REPORTS_BUCKET", "DOWNLOAD_QUEUE_URL", "SCHEDULE_QUEUE_URL",
                         "EVENTBRIDGE_QUEUE_URL"):
                out.write(f"export {name}={env[name]}\n")
        if argv[1] == "serve":
            print(f"local_aws: moto at {endpoint}; environment in .local/aws.env; Ctrl-C stops", flush=True)
            while True:
                time.sleep(3600)
        command = argv[argv.index("--") + 1:] if "--" in argv else argv[2:]
        if not command:
            sys.exit("local_aws: run needs a command after --")
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        stop(process)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
