#!/usr/bin/env python3
"""Fails when a function's code calls an AWS action that template.yaml does
not grant to that function, or the template grants one nothing calls.

1. The code is cut into functions (`fn`s with a body, tests left out): each
   Lambda function's crate (crates/<function>/src) and the workspace crates
   it links (its Cargo.toml [dependencies], transitively: stripe-reports,
   tables), without the other functions' crates and use cases
   (crates/stripe-reports/src/<other function>.rs) except the use cases it
   runs (USE_CASES: the eventbridge function runs the webhook's).
2. Adapters: the files of those library crates that use an AWS SDK crate
   (`aws_sdk_s3`, …), and the `impl` blocks of the types they define written
   elsewhere (an adapter's trait implemented in a use case's crate). Each
   SDK call (`client.get_item()`, …) maps to IAM actions and the resource
   they act on (SDK_ACTIONS below, per service: the SDK crate of the file).
3. From every function of the function's crate, calls are followed by name
   (`self.ledger.mark_stored(`, `Type::load(`, `load_stripe_secrets(`, a
   function passed by name), through use cases, adapters and back
   (`secrets_cache` → `SecretsCache::load` → `reader.read()`), a call
   matching only functions of the same number of parameters; common names
   need `self.` or a port's receiver (PORT_RECEIVER), and a function of
   another file called without a path must be imported. What is reached
   calls the AWS actions of its SDK calls; an SQS send takes the queue of
   the enqueue_* method on its way (QUEUE_OF_METHOD).
4. The function's `Policies` in template.yaml: explicit Allow statements only
   (no SAM policy templates, no wildcards), each resource classified by what
   it names (the table, its index, a queue by logical id, the secret, the
   bucket, the bucket's report prefix, a KMS key, the Glue catalog, the
   stack's database, its tables).

Both sides become sets of (action, resource); any difference fails.
Run: .venv/bin/python scripts/check_iam.py
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from cfn_template import CRATES, ROOT, fail, functions, load_template, match_brace, read_rust, references

FUNCTIONS = {
    "scheduler": "SchedulerFunction",
    "webhook": "WebhookFunction",
    "eventbridge": "EventBridgeFunction",
    "downloader": "DownloaderFunction",
    "converter": "ConverterFunction",
}
# The use cases (crates/stripe-reports/src/<name>.rs) a function runs, when
# not only its own: events from EventBridge take the webhook's (same dedupe,
# same routing).
USE_CASES = {"eventbridge": {"eventbridge", "webhook"}}

# Glue checks the catalog, the database and the table for each table call.
GLUE_TABLE = ("catalog", "database", "tables")

# Per service (the `aws_sdk_<service>` crate an adapter file uses): SDK
# operation → [(IAM action, resource)]. Resources: table, index:<name>, queue
# (which one: by the adapter method called, QUEUE_OF_METHOD), secret, bucket,
# objects (the bucket's report prefix), key:secret / key:bucket (the optional
# customer managed KMS keys, needed only when one is set), catalog, database
# and tables (the Glue catalog, the stack's database, its tables).
SDK_ACTIONS = {
    "dynamodb": {
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
    },
    "sqs": {
        "send_message": [("sqs:SendMessage", "queue")],
        "send_message_batch": [("sqs:SendMessage", "queue")],
        "receive_message": [("sqs:ReceiveMessage", "queue")],
        "delete_message": [("sqs:DeleteMessage", "queue")],
        "get_queue_attributes": [("sqs:GetQueueAttributes", "queue")],
    },
    "s3": {
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
    },
    "secretsmanager": {
        "get_secret_value": [("secretsmanager:GetSecretValue", "secret"), ("kms:Decrypt", "key:secret")],
        "describe_secret": [("secretsmanager:DescribeSecret", "secret")],
    },
    "glue": {
        "get_table": [("glue:GetTable", r) for r in GLUE_TABLE],
        "create_table": [("glue:CreateTable", r) for r in GLUE_TABLE],
        "update_table": [("glue:UpdateTable", r) for r in GLUE_TABLE],
        "delete_table": [("glue:DeleteTable", r) for r in GLUE_TABLE],
        "get_tables": [("glue:GetTables", r) for r in GLUE_TABLE],
        "get_database": [("glue:GetDatabase", r) for r in GLUE_TABLE[:2]],
    },
}
# `client.<name>()` that is not an SDK operation.
NOT_OPERATIONS = {"clone", "config"}
# Which queue an SqsQueue method sends to (the queue URL a function passes is
# the one its name says: require_download_queue_url for downloads, …); the
# template's queues are classified by their logical id (ConversionQueue →
# queue:conversion).
QUEUE_OF_METHOD = {
    "enqueue_download": "queue:download",
    "enqueue_schedule": "queue:schedule",
    "enqueue_conversion": "queue:conversion",
}
# Method names too common to follow by name alone (GENERIC, and every name of
# five characters or fewer) are followed as `self.name(` in the same file or
# when the receiver names a port (`self.ledger.run(`,
# `deps.downloader.sink.store(`, `self.files.open(`).
PORT_RECEIVER = r"\w*(?:ledger|sink|queue|downloads|schedules|conversions|secrets|reader|files|catalog)\s*\.\s*"
# Names that are also std or SDK methods (`item.get(`, `.send()`).
GENERIC = {"get", "run", "new", "read", "send", "store", "abort", "complete", "client", "url", "table", "bucket", "insert", "remove", "open", "list"}


def common(name: str) -> bool:
    return name in GENERIC or len(name) <= 5


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------ the code


def linked_libraries(crates: list[str]) -> dict[str, Path]:
    """Rust name → src folder of each workspace crate these function crates
    link ([dependencies] of crates/<function>/Cargo.toml, transitively)."""
    libraries: dict[str, Path] = {}
    pending, seen = list(crates), set(crates)
    while pending:
        path = CRATES / pending.pop() / "Cargo.toml"
        if not path.exists():
            raise SystemExit(f"FAIL {rel(path)} is missing (FUNCTIONS in scripts/check_iam.py names its crate)")
        manifest = tomllib.loads(path.read_text())
        for dependency in manifest.get("dependencies", {}):
            if dependency not in seen and (CRATES / dependency / "Cargo.toml").exists():
                seen.add(dependency)
                pending.append(dependency)
                libraries[dependency.replace("-", "_")] = CRATES / dependency / "src"
    return libraries


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.rs")) if folder.is_dir() else []


def module_files(src: Path, name: str) -> list[Path]:
    file = src / f"{name}.rs"
    return ([file] if file.exists() else []) + sources(src / name)


def sdk_services(raw: str) -> set[str]:
    return set(re.findall(r"\baws_sdk_(\w+)", raw))


def skip_angle(text: str, i: int) -> int:
    """The offset past the `>` closing the `<` at `i` (`->` inside is not one)."""
    depth = 0
    while i < len(text):
        if text.startswith("->", i):
            i += 2
            continue
        depth += {"<": 1, ">": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return i
    return i


def split_args(text: str, open_at: int) -> list[str]:
    """The top-level comma-separated items between the `(` at `open_at` and its
    `)`; a closure's `|a, b|` and a type's `<K, V>` are one item (a `<` right
    after a name or `::` opens generics; rustfmt spaces a comparison)."""
    items, current, stack, i = [], "", [], open_at
    closing = {")": "(", "]": "[", "}": "{"}
    while i < len(text):
        c = text[i]
        if text.startswith(("->", "=>"), i):
            current += text[i : i + 2]
            i += 2
            continue
        if c in "([{" or (c == "<" and re.search(r"(\w|::)$", current)):
            stack.append(c)
        elif c == ">" and stack and stack[-1] == "<":
            stack.pop()
        elif c in closing:
            while stack and stack[-1] == "<":
                stack.pop()
            if stack:
                stack.pop()
            if not stack:
                break
        elif c == "|" and len(stack) == 1 and re.fullmatch(r"\s*(move\s+|async\s+move\s+)?", current):
            end = text.find("|", i + 1)
            end = len(text) if end < 0 else end
            current += text[i : end + 1]
            i = end + 1
            continue
        if len(stack) == 1 and c == ",":
            items.append(current)
            current = ""
        elif stack and not (len(stack) == 1 and c == "(" and i == open_at):
            current += c
        i += 1
    items.append(current)
    return [item for item in items if item.strip()]


def parameters(signature: str) -> tuple[int, bool]:
    """(number of parameters, whether the first is `self`) of an `fn` signature."""
    m = re.search(r"\bfn\s+\w+\s*", signature)
    i = m.end()
    if signature[i : i + 1] == "<":
        i = skip_angle(signature, i)
    i = signature.index("(", i)
    params = split_args(signature, i)
    has_self = bool(params) and re.match(r"\s*(&\s*('\w+\s*)?)?(mut\s+)?self\b", params[0]) is not None
    return len(params), has_self


class Node:
    """One `fn` with a body."""

    def __init__(self, path: Path, name: str, signature: str, body: str, offset: int, impl: tuple | None, adapter: bool):
        self.path, self.name, self.body, self.offset = path, name, body, offset
        self.arity, self.method = parameters(signature)
        self.type = impl[2] if impl else None
        self.adapter = adapter
        self.direct: set[tuple[str, str]] = set()
        self.calls = self.call_sites()

    def __repr__(self) -> str:
        return f"{rel(self.path)} {self.name}"

    def call_sites(self) -> list[tuple[str, str | None, str, int | None]]:
        """(kind, qualifier, name, arguments) of every call in the body: kind
        `self` (`self.g(`), `port` (`self.ledger.g(`), `dot` (`x.g(`), `path`
        (`Type::g(`, qualifier Type), `free` (`g(`), `value` (`g` named, not called)."""
        body, sites = self.body, []
        for m in re.finditer(r"(?<![\w'])(\w+)\s*(?:::\s*<[^()]*?>\s*)?(\(|!)?", body):
            name, call = m.group(1), m.group(2)
            if call == "!" or name in {"fn", "let", "if", "match", "while", "for", "return", "loop", "mut", "ref", "move", "async", "await", "as", "in", "impl", "where", "pub", "use", "struct", "enum", "mod", "crate", "super", "Self", "self", "Some", "Ok", "Err", "None"}:
                continue
            before = body[max(0, m.start() - 200) : m.start()]
            args = len(split_args(body, m.end() - 1)) if call == "(" else None
            if re.search(r"\.\s*$", before):
                if not call:
                    continue  # a field
                if re.search(r"\bself\s*\.\s*$", before):
                    sites.append(("self", None, name, args))
                elif re.search(rf"\b{PORT_RECEIVER}$", before):
                    sites.append(("port", None, name, args))
                sites.append(("dot", None, name, args))
            elif q := re.search(r"(\w+)\s*(?:<[^()]*?>\s*)?::\s*$", before):
                sites.append(("path", q.group(1), name, args))
            elif call:
                sites.append(("free", None, name, args))
            else:
                sites.append(("value", None, name, None))
        return sites


class Code:
    """The functions' Rust sources as a graph of `fn`s, adapters marked."""

    def __init__(self) -> None:
        self.libraries = linked_libraries(list(FUNCTIONS))
        files: dict[Path, tuple[str, str]] = {}
        for folder in [CRATES / f / "src" for f in FUNCTIONS] + list(self.libraries.values()):
            for path in sources(folder):
                files[path] = read_rust(path)
        # Adapter files: library files that use an AWS SDK crate; elsewhere,
        # the impl blocks of the types they define.
        self.adapter_files = {
            path for path, (raw, _) in files.items()
            if any(path.is_relative_to(src) for src in self.libraries.values()) and sdk_services(raw)
        }
        adapter_types = {name for path in self.adapter_files for name in re.findall(r"\b(?:struct|enum)\s+(\w+)", files[path][1])}
        self.nodes: list[Node] = []
        self.problems: list[str] = []
        for path, (raw, text) in sorted(files.items()):
            blocks = impl_blocks(text)
            for name, signature, body, _, offset in functions(text):
                impl = min((b for b in blocks if b[0] <= offset < b[1]), key=lambda b: b[1] - b[0], default=None)
                adapter = path in self.adapter_files or (impl is not None and impl[2] in adapter_types)
                node = Node(path, name, signature, body, offset, impl, adapter)
                if adapter:
                    self.sdk_calls(node, raw)
                self.nodes.append(node)
        self.types = {node.type for node in self.nodes if node.type}
        # What each file's `use` declarations bring in by name (`*`: a glob).
        self.imports = {
            path: {word for use in re.findall(r"\buse\s+[^;]*;", text) for word in re.findall(r"\w+|\*", use)}
            for path, (_, text) in files.items()
        }

    def sdk_calls(self, node: Node, raw: str) -> None:
        services = sdk_services(raw)
        consts = dict(re.findall(r'const\s+(\w+)\s*:\s*&str\s*=\s*"([^"]*)"', raw))
        body = node.body
        for call in re.finditer(r"\bclient\s*\.\s*(\w+)\s*\(\s*\)", body):
            op = call.group(1)
            if op in NOT_OPERATIONS:
                continue
            known = [s for s in sorted(services) if op in SDK_ACTIONS.get(s, {})]
            if len(known) != 1:
                crates = ", ".join(f"aws_sdk_{s}" for s in sorted(services)) or "no aws_sdk_ crate"
                why = "is ambiguous between" if known else "is not in SDK_ACTIONS for"
                where = f"SDK_ACTIONS[{next(iter(services))!r}]" if len(services) == 1 else "SDK_ACTIONS (one SDK crate per adapter file)"
                self.problems.append(f"{node}: calls the SDK operation `{op}`, which {why} {crates}: add it to {where} in scripts/check_iam.py")
                continue
            chain_end = body.find(".send()", call.end())
            chain = body[call.end() : chain_end if chain_end > 0 else len(body)]
            index = re.search(r"\.\s*index_name\s*\(\s*(\w+|\")", chain)
            for action, resource in SDK_ACTIONS[known[0]][op]:
                if op == "query" and index:
                    token = index.group(1)
                    if token == '"':
                        at = node.offset + call.end() + index.start(1)
                        token = raw[at + 1 : raw.index('"', at + 1)]
                    else:
                        token = consts.get(token, token)
                    resource = f"index:{token}"
                node.direct.add((action, resource))

    def excluded(self, function: str) -> set[Path]:
        """The other functions' crates and use cases (but the use cases it
        runs), and the crates this one does not link."""
        linked = linked_libraries([function])
        out = {path for name, src in self.libraries.items() if name not in linked for path in sources(src)}
        for other in set(FUNCTIONS) - {function}:
            if other.replace("-", "_") not in linked:
                out |= set(sources(CRATES / other / "src"))
            if other in USE_CASES.get(function, {function}):
                continue
            for src in self.libraries.values():
                out |= set(module_files(src, other))
        return out


def impl_blocks(text: str) -> list[tuple[int, int, str]]:
    """(start, end, self type's last name) of every `impl` block of stripped `text`."""
    blocks = []
    for m in re.finditer(r"\bimpl\b([^{;]*)\{", text):
        header = re.split(r"\bwhere\b", m.group(1))[0]
        for_ = re.search(r"\bfor\b(.*)$", header, re.S)
        target = for_.group(1) if for_ else header
        while re.search(r"<[^<>]*>", target):
            target = re.sub(r"<[^<>]*>", "", target)
        names = re.findall(r"\w+", target)
        if names:
            blocks.append((m.start(), match_brace(text, m.end() - 1), names[-1]))
    return blocks


def callees(node: Node, by_name: dict[str, list[Node]], code: Code) -> list[Node]:
    """The nodes a node's calls may reach, by name, kind and number of
    arguments. A function of another file called or named without a path
    must be imported by name (or by a glob)."""
    out = []
    imports = code.imports[node.path]
    for kind, qualifier, name, args in node.calls:
        for target in by_name.get(name, []):
            if target is node:
                continue
            visible = target.path == node.path or name in imports or "*" in imports
            if kind == "value":
                ok = not target.method and visible
            elif kind == "path":
                # `Self::g(`, `Type::g(` (that type's), `module::g(`, `T::g(` (a generic).
                if qualifier == "Self":
                    ok = target.type == node.type
                elif qualifier in code.types:
                    ok = target.type == qualifier
                else:
                    ok = True
                ok = ok and args in (None, target.arity)
            else:
                wanted = target.arity - 1 if target.method else target.arity
                if args is not None and args != wanted:
                    continue
                same_file = target.path == node.path
                if kind == "free":
                    ok = not target.method and visible
                elif kind == "self":
                    ok = target.method and same_file
                elif kind == "port":
                    ok = target.method
                else:  # dot
                    ok = target.method and not common(name)
            if ok:
                out.append(target)
    return out


def code_actions(function: str, code: Code) -> tuple[set, dict]:
    """(action, resource) pairs the function's code reaches, and for each the
    use-case function and adapter it comes through (for messages)."""
    excluded = code.excluded(function)
    nodes = [n for n in code.nodes if n.path not in excluded]
    by_name: dict[str, list[Node]] = {}
    for node in nodes:
        by_name.setdefault(node.name, []).append(node)
    roots = [n for n in nodes if n.path.is_relative_to(CRATES / function / "src")]
    # Breadth first over (node, queue): the queue an SqsQueue send goes to is
    # the one of the enqueue_* method on the way (QUEUE_OF_METHOD).
    parent: dict[tuple, tuple | None] = {(n, None): None for n in roots}
    pending = list(parent)
    while pending:
        state = pending.pop(0)
        node, queue = state
        for target in callees(node, by_name, code):
            next_state = (target, QUEUE_OF_METHOD.get(target.name, queue))
            if next_state not in parent:
                parent[next_state] = state
                pending.append(next_state)
    pairs: set[tuple[str, str]] = set()
    via: dict[tuple[str, str], set[str]] = {}
    for state in parent:
        node, queue = state
        for action, resource in node.direct:
            pair = (action, queue if resource == "queue" and queue else resource)
            pairs.add(pair)
            chain = []
            while state is not None:
                chain.append(state[0])
                state = parent[state]
            chain.reverse()
            entry = next((i for i, n in enumerate(chain) if n.adapter), len(chain) - 1)
            caller = chain[entry - 1] if entry else chain[0]
            via.setdefault(pair, set()).add(f"{caller} → {chain[entry].name}")
            state = (node, queue)
    return pairs, via


# ------------------------------------------------------------------ the template


def words(logical_id: str) -> str:
    return "-".join(w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", logical_id))


def classify(resource, resources: dict) -> str:
    """Which resource a policy's Resource value names, loosely."""
    text = json.dumps(resource)
    named = references(resource)
    if "RunsTable" in named:
        m = re.search(r"/index/([\w.-]+)", text)
        return f"index:{m.group(1)}" if m else ("table" if "/index" not in text else "index:*")
    queues = [n for n in named if resources.get(n, {}).get("Type") == "AWS::SQS::Queue"]
    if len(queues) == 1:
        # DownloadQueue → queue:download, ConversionDeadLetterQueue → queue:conversion-dead-letter.
        return "queue:" + words(re.sub(r"Queue$", "", queues[0]))
    if ":glue:" in text:
        arn = resource.get("Fn::Sub") if isinstance(resource, dict) else None
        arn = arn[0] if isinstance(arn, list) else arn
        database = {"ReportsDatabase", "TablesDatabase"} & named
        if isinstance(arn, str) and arn.endswith(":catalog"):
            return "catalog"
        if isinstance(arn, str) and database and re.search(r":database/\$\{\w+\}$", arn):
            return "database"
        if isinstance(arn, str) and database and re.search(r":table/\$\{\w+\}/\*$", arn):
            return "tables"
        return f"unknown Glue resource (the catalog, the stack's database or its `table/<database>/*`) {text}"
    if "SecretKmsKeyArn" in named:
        return "key:secret"
    if "BucketKmsKeyArn" in named:
        return "key:bucket"
    if "StripeSecret" in named or "StripeSecretArn" in named:
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


def template_actions(resource: dict, resources: dict) -> tuple[set, list[str]]:
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
                kind = classify(target, resources)
                if kind.startswith("unknown") or kind.endswith("*"):
                    problems.append(f"{action} on {kind}")
                pairs.add((action, kind))
    return pairs, problems


def main() -> None:
    code = Code()
    template = load_template()
    resources = template["Resources"]
    problems = list(code.problems)
    for function, logical_id in FUNCTIONS.items():
        if logical_id not in resources:
            problems.append(f"{logical_id}: not in template.yaml (FUNCTIONS in scripts/check_iam.py names it for crates/{function})")
            continue
        reached, via = code_actions(function, code)
        granted, policy_problems = template_actions(resources[logical_id], resources)
        problems += [f"{logical_id}: {p}" for p in policy_problems]
        for action, resource in sorted(reached - granted):
            problems.append(
                f"{logical_id}: the code calls {action} on {resource} but the template does not grant it "
                f"(via {'; '.join(sorted(via[(action, resource)]))})"
            )
        for action, resource in sorted(granted - reached):
            problems.append(f"{logical_id}: the template grants {action} on {resource} but no code of the {function} calls it")
        print(f"{function}: " + ", ".join(f"{a} on {r}" for a, r in sorted(reached)))
    fail(problems, "every function is granted exactly the AWS actions its code calls")


if __name__ == "__main__":
    main()
