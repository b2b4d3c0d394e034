#!/usr/bin/env python3
"""Fails when a function's code calls an AWS action that template.yaml does
not grant to that function, or the template grants one nothing calls.

1. The adapters (crates/stripe-reports/src/aws/*.rs) are cut into functions;
   each SDK call (`client.get_item()`, …) maps to IAM actions and the
   resource they act on (SDK_ACTIONS below), and calls between adapter
   functions (`self.run(`) are followed.
2. What each Lambda function reaches: its crate (crates/<function>/src), its
   use case (crates/stripe-reports/src/<function>.rs) and the library modules
   they name (`crate::env`, `stripe_reports::env`, …), searched for calls of
   the adapters' public functions (`self.ledger.mark_stored(`, `load_stripe_secrets(`).
3. The function's `Policies` in template.yaml: explicit Allow statements only
   (no SAM policy templates, no wildcards), each resource classified by what
   it names (the table, its index, a queue, the secret, the bucket, the
   bucket's report prefix, a KMS key).

Both sides become sets of (action, resource); any difference fails.
Run: .venv/bin/python scripts/check_iam.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cfn_template import CRATES, fail, functions, load_template, read_rust

FUNCTIONS = {"scheduler": "SchedulerFunction", "webhook": "WebhookFunction", "downloader": "DownloaderFunction"}
ADAPTERS = CRATES / "stripe-reports" / "src" / "aws"
LIBRARY = CRATES / "stripe-reports" / "src"

# SDK operation → [(IAM action, resource)]. Resources: table, index:<name>,
# queue (which one: by the adapter method called, QUEUE_OF_METHOD), secret,
# bucket, objects (the bucket's report prefix), key:secret / key:bucket (the
# optional customer managed KMS keys, needed only when one is set).
SDK_ACTIONS = {
    "get_item": [("dynamodb:GetItem", "table")],
    "put_item": [("dynamodb:PutItem", "table")],
    "update_item": [("dynamodb:UpdateItem", "table")],
    "delete_item": [("dynamodb:DeleteItem", "table")],
    "query": [("dynamodb:Query", "table")],  # index:<name> when the call names one
    "scan": [("dynamodb:Scan", "table")],
    "batch_get_item": [("dynamodb:BatchGetItem", "table")],
    "batch_write_item": [("dynamodb:BatchWriteItem", "table")],
    "transact_write_items": [("dynamodb:UpdateItem", "table"), ("dynamodb:PutItem", "table")],
    "transact_get_items": [("dynamodb:GetItem", "table")],
    "describe_table": [("dynamodb:DescribeTable", "table")],
    "create_table": [("dynamodb:CreateTable", "table")],
    "send_message": [("sqs:SendMessage", "queue")],
    "send_message_batch": [("sqs:SendMessage", "queue")],
    "receive_message": [("sqs:ReceiveMessage", "queue")],
    "delete_message": [("sqs:DeleteMessage", "queue")],
    "get_queue_attributes": [("sqs:GetQueueAttributes", "queue")],
    # SSE-KMS: a single put needs GenerateDataKey; a multipart upload also Decrypt.
    "put_object": [("s3:PutObject", "objects"), ("kms:GenerateDataKey", "key:bucket")],
    "create_multipart_upload": [("s3:PutObject", "objects"), ("kms:GenerateDataKey", "key:bucket"), ("kms:Decrypt", "key:bucket")],
    "upload_part": [("s3:PutObject", "objects"), ("kms:GenerateDataKey", "key:bucket"), ("kms:Decrypt", "key:bucket")],
    "complete_multipart_upload": [("s3:PutObject", "objects"), ("kms:Decrypt", "key:bucket")],
    "abort_multipart_upload": [("s3:AbortMultipartUpload", "objects")],
    "list_multipart_uploads": [("s3:ListBucketMultipartUploads", "bucket")],
    "list_parts": [("s3:ListMultipartUploadParts", "objects")],
    "get_object": [("s3:GetObject", "objects"), ("kms:Decrypt", "key:bucket")],
    "head_object": [("s3:GetObject", "objects")],
    "delete_object": [("s3:DeleteObject", "objects")],
    "copy_object": [("s3:PutObject", "objects"), ("s3:GetObject", "objects")],
    "list_objects_v2": [("s3:ListBucket", "bucket")],
    "get_secret_value": [("secretsmanager:GetSecretValue", "secret"), ("kms:Decrypt", "key:secret")],
    "describe_secret": [("secretsmanager:DescribeSecret", "secret")],
}
# Which queue an SqsQueue method sends to (the queue URL a function passes is
# the one its name says: require_download_queue_url for downloads, …).
QUEUE_OF_METHOD = {"enqueue_download": "queue:download", "enqueue_schedule": "queue:schedule"}
# Adapter method names too common to find by name alone: the receiver must
# name the port (`self.ledger.run(`, `deps.downloader.sink.store(`).
PORT_RECEIVER = r"\w*(?:ledger|sink|queue|downloads|schedules|secrets|reader)\s*\.\s*"
# Names that inside an adapter are also std methods (`item.get(`): followed
# only as `self.name(`.
GENERIC = {"get", "run", "new", "read", "send", "store", "abort", "complete", "client", "url", "table", "bucket", "insert", "remove"}


def adapter_index() -> dict[str, dict]:
    """name → {public, method, actions (set of (action, resource))} for every
    adapter function, after following calls inside the adapters."""
    defs: dict[str, list[dict]] = {}
    for path in sorted(ADAPTERS.glob("*.rs")):
        raw, text = read_rust(path)
        consts = dict(re.findall(r'const\s+(\w+)\s*:\s*&str\s*=\s*"([^"]*)"', raw))
        for name, signature, body, public, offset in functions(text):
            direct: set[tuple[str, str]] = set()
            problems = []
            for call in re.finditer(r"\bclient\s*\.\s*(\w+)\s*\(\s*\)", body):
                op = call.group(1)
                if op not in SDK_ACTIONS:
                    problems.append(f"{path.name}: {name} calls the SDK operation `{op}`: add it to SDK_ACTIONS in scripts/check_iam.py")
                    continue
                chain_end = body.find(".send()", call.end())
                chain = body[call.end() : chain_end if chain_end > 0 else len(body)]
                index = re.search(r"\.\s*index_name\s*\(\s*(\w+|\")", chain)
                for action, resource in SDK_ACTIONS[op]:
                    if op == "query" and index:
                        token = index.group(1)
                        if token == '"':
                            at = offset + call.end() + index.start(1)
                            token = raw[at + 1 : raw.index('"', at + 1)]
                        else:
                            token = consts.get(token, token)
                        resource = f"index:{token}"
                    direct.add((action, resource))
            defs.setdefault(name, []).append(
                {
                    "file": path.name,
                    "public": public,
                    "method": "self" in signature,
                    "body": body,
                    "direct": direct,
                    "problems": problems,
                }
            )
    names_by_file: dict[str, set[str]] = {}
    for name, entries in defs.items():
        for entry in entries:
            names_by_file.setdefault(entry["file"], set()).add(name)
    # Calls inside an adapter file: `self.name(` for methods, `name(` for free functions.
    for name, entries in defs.items():
        for entry in entries:
            entry["calls"] = set()
            for other in names_by_file[entry["file"]]:
                if other == name:
                    continue
                for target in defs[other]:
                    if target["file"] != entry["file"]:
                        continue
                    if not target["method"]:
                        pattern = rf"(?<![.\w]){other}\s*\("
                    elif other in GENERIC:
                        pattern = rf"\bself\s*\.\s*{other}\s*\("
                    else:
                        pattern = rf"\.\s*{other}\s*\("
                    if re.search(pattern, entry["body"]):
                        entry["calls"].add((other, target["file"]))
    # Transitive closure.
    def reach(name: str, file: str, seen: set) -> set:
        if (name, file) in seen:
            return set()
        seen.add((name, file))
        entry = next(e for e in defs[name] if e["file"] == file)
        actions = set(entry["direct"])
        for other, other_file in entry["calls"]:
            actions |= reach(other, other_file, seen)
        return actions

    index = {}
    for name, entries in defs.items():
        public = [e for e in entries if e["public"]]
        if not public:
            continue
        sets = {frozenset(reach(name, e["file"], set())) for e in public}
        if len([s for s in sets if s]) > 1:
            raise SystemExit(f"FAIL adapter function name `{name}` is defined in several adapters with different AWS calls; rename one")
        actions = set().union(*sets)
        if name in QUEUE_OF_METHOD:
            actions = {(a, QUEUE_OF_METHOD[name] if r == "queue" else r) for a, r in actions}
        index[name] = {
            "method": any(e["method"] for e in public),
            "actions": actions,
            "problems": [p for e in entries for p in e["problems"]],
        }
    return index


def library_module(name: str) -> list[Path]:
    file = LIBRARY / f"{name}.rs"
    folder = LIBRARY / name
    return ([file] if file.exists() else []) + (sorted(folder.rglob("*.rs")) if folder.is_dir() else [])


def reached_files(function: str) -> list[Path]:
    """The function's crate, its use case, and the library modules they name
    (transitively), without the adapters (followed through their calls) and
    without the other functions' use cases."""
    others = set(FUNCTIONS) - {function}
    files = sorted((CRATES / function / "src").rglob("*.rs")) + library_module(function)
    seen = set(files)
    queue = list(files)
    while queue:
        raw = read_rust(queue.pop())[0]
        names = set(re.findall(r"\b(?:crate|stripe_reports)::(\w+)", raw))
        for group in re.findall(r"\b(?:crate|stripe_reports)::\{([^}]*)\}", raw):
            names |= set(re.findall(r"^\s*(\w+)", part)[0] for part in group.split(",") if part.strip())
        for name in names - others - {"aws"}:
            for path in library_module(name):
                if path not in seen:
                    seen.add(path)
                    queue.append(path)
    return sorted(seen)


def code_actions(function: str, adapters: dict) -> tuple[set, dict]:
    """(action, resource) pairs the function's code reaches, and for each the
    adapter function(s) it comes through (for messages)."""
    pairs: set[tuple[str, str]] = set()
    via: dict[tuple[str, str], set[str]] = {}
    common_names = set()
    for path in LIBRARY.rglob("*.rs"):
        if ADAPTERS in path.parents:
            continue
        common_names |= {name for name, *_ in functions(read_rust(path)[1])}
    for path in CRATES.glob("*/src/**/*.rs"):
        if "stripe-reports" not in path.parts:
            common_names |= {name for name, *_ in functions(read_rust(path)[1])}
    for path in reached_files(function):
        text = read_rust(path)[1]
        for name, entry in adapters.items():
            if not entry["actions"]:
                continue
            if entry["method"]:
                receiver = PORT_RECEIVER if name in common_names or len(name) <= 5 else r""
                pattern = rf"\b{receiver}{name}\s*\(" if receiver else rf"\.\s*{name}\s*\("
            else:
                pattern = rf"(?<![.\w]){name}\s*\("
            if re.search(pattern, text):
                for pair in entry["actions"]:
                    pairs.add(pair)
                    via.setdefault(pair, set()).add(f"{path.relative_to(CRATES.parent)} → {name}")
    return pairs, via


def classify(resource) -> str:
    """Which resource a policy's Resource value names, loosely."""
    text = json.dumps(resource)
    if "RunsTable" in text:
        m = re.search(r"/index/([\w.-]+)", text)
        return f"index:{m.group(1)}" if m else ("table" if "/index" not in text else "index:*")
    if "DownloadQueue" in text and "DeadLetter" not in text:
        return "queue:download"
    if "ScheduleQueue" in text and "DeadLetter" not in text:
        return "queue:schedule"
    if "SecretKmsKeyArn" in text:
        return "key:secret"
    if "BucketKmsKeyArn" in text:
        return "key:bucket"
    if "StripeSecret" in text:
        return "secret"
    if "ReportsBucket" in text or "ExistingBucketName" in text:
        if "${ReportsPrefix}*" in text:
            return "objects"
        if re.search(r"\$\{Bucket\}/", text):
            return "objects:not-the-report-prefix"
        return "bucket"
    return f"unknown resource {text}"


def statements(policies) -> tuple[list[dict], list[str]]:
    found, problems = [], []
    for policy in policies or []:
        if not (isinstance(policy, dict) and set(policy) == {"Statement"}):
            problems.append(f"a policy that is not an explicit Statement list: {json.dumps(policy)[:120]}")
            continue
        for statement in policy["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                # Granted when its condition holds (an optional KMS key): counted.
                _, yes, no = statement["Fn::If"]
                statement = yes if isinstance(yes, dict) and "Effect" in yes else no
                if not (isinstance(statement, dict) and "Effect" in statement):
                    continue
            found.append(statement)
    return found, problems


def template_actions(resource: dict) -> tuple[set, list[str]]:
    pairs: set[tuple[str, str]] = set()
    found, problems = statements(resource["Properties"].get("Policies"))
    for statement in found:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        targets = statement.get("Resource")
        if isinstance(targets, dict) and "Fn::If" in targets:
            targets = [targets]
        targets = targets if isinstance(targets, list) else [targets]
        for action in actions:
            if not isinstance(action, str) or "*" in action:
                problems.append(f"action {json.dumps(action)}: name each action, no wildcards")
                continue
            for target in targets:
                kind = classify(target)
                if kind.startswith("unknown") or kind.endswith("*"):
                    problems.append(f"{action} on {kind}")
                pairs.add((action, kind))
    return pairs, problems


def main() -> None:
    adapters = adapter_index()
    template = load_template()
    problems = [p for entry in adapters.values() for p in entry["problems"]]
    for function, logical_id in FUNCTIONS.items():
        code, via = code_actions(function, adapters)
        granted, policy_problems = template_actions(template["Resources"][logical_id])
        problems += [f"{logical_id}: {p}" for p in policy_problems]
        for action, resource in sorted(code - granted):
            problems.append(
                f"{logical_id}: the code calls {action} on {resource} but the template does not grant it "
                f"(via {'; '.join(sorted(via[(action, resource)]))})"
            )
        for action, resource in sorted(granted - code):
            problems.append(f"{logical_id}: the template grants {action} on {resource} but no code of the {function} calls it")
        print(f"{function}: " + ", ".join(f"{a} on {r}" for a, r in sorted(code)))
    fail(problems, "every function is granted exactly the AWS actions its code calls")


if __name__ == "__main__":
    main()
