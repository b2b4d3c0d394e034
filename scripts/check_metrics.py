#!/usr/bin/env python3
"""Fails when an alarm or a dashboard chart in template.yaml watches a metric
nothing emits: every (namespace, metric, dimensions) must be either

- one the code emits: `metrics::emit("<function>", ...)` in crates/*/src puts
  each metric in namespace StripeReports with the one dimension
  Function=<function> (crates/stripe-reports/src/metrics.rs); the metric
  names are the `name: "X"` of the Metric literals in the call, or the
  PascalCase string literals of the helper function the call passes
  (`&answer_metrics(&answer)`); or
- one AWS publishes for the resource the dimension names: AWS/Lambda with
  FunctionName of a function of this template, AWS/SQS with QueueName of one
  of its queues, AWS/ApiGateway with ApiId (and optionally Stage) of its HTTP
  API, with the metric names those services document (HTTP APIs: `5xx`, not
  REST's `5XXError`).

Parts that depend on a condition (an alarm's `!If` metric query, a dashboard
body whose `!Sub` variables are `!If`s) are checked under every combination
of the conditions they name, so each line is checked in every body CloudFormation
may render.

Run: .venv/bin/python scripts/check_metrics.py
"""

from __future__ import annotations

import itertools
import json
import re

from cfn_template import CRATES, fail, functions, if_conditions, load_template, match_brace, read_rust

NAMESPACE = "StripeReports"
UNITS = {"Count", "Bytes", "Seconds", "Milliseconds", "Microseconds", "Percent", "None", "Kilobytes", "Megabytes"}
# What AWS publishes: namespace → (metric names, dimension name → resource
# types the dimension's value must reference, required dimension names).
AWS_METRICS = {
    "AWS/Lambda": (
        {"Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions", "DeadLetterErrors", "IteratorAge"},
        {"FunctionName": {"AWS::Serverless::Function", "AWS::Lambda::Function"}},
        {"FunctionName"},
    ),
    "AWS/SQS": (
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateAgeOfOldestMessage",
            "NumberOfMessagesSent",
            "NumberOfMessagesReceived",
            "NumberOfMessagesDeleted",
            "NumberOfEmptyReceives",
            "SentMessageSize",
        },
        {"QueueName": {"AWS::SQS::Queue"}},
        {"QueueName"},
    ),
    # HTTP APIs (API Gateway v2); REST APIs publish 4XXError/5XXError by ApiName instead.
    "AWS/ApiGateway": (
        {"4xx", "5xx", "Count", "Latency", "IntegrationLatency", "DataProcessed"},
        {"ApiId": {"AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"}, "Stage": None},
        {"ApiId"},
    ),
}


def emitted() -> tuple[set[tuple[str, str]], list[str]]:
    """(function, metric) pairs the code emits."""
    pairs: set[tuple[str, str]] = set()
    problems: list[str] = []
    for path in sorted(CRATES.glob("*/src/**/*.rs")):
        raw, text = read_rust(path)
        helpers = {name: (body, offset) for name, _, body, _, offset in functions(text)}
        for call in re.finditer(r"\bmetrics\s*::\s*emit\s*\(", text):
            end = call.end()
            depth = 1
            while depth and end < len(text):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            args_raw, args = raw[call.end() : end - 1], text[call.end() : end - 1]
            function = re.match(r'\s*"([^"]*)"\s*,', args_raw)
            where = f"{path.relative_to(CRATES.parent)}:{raw.count(chr(10), 0, call.start()) + 1}"
            if not function:
                problems.append(f"{where}: metrics::emit's first argument must be the function's name as a literal")
                continue
            names = re.findall(r'\bname\s*:\s*"([^"]+)"', args_raw)
            if not names:
                helper = re.search(r"(\w+)\s*\(", args[function.end() :])
                if helper and helper.group(1) in helpers:
                    body, offset = helpers[helper.group(1)]
                    literals = re.findall(r'"([A-Z][A-Za-z0-9]*)"', raw[offset : offset + len(body)])
                    names = [name for name in literals if name not in UNITS]
            if not names:
                problems.append(f"{where}: cannot tell which metrics this emit call sends (write `Metric {{ name: \"X\", .. }}` literals)")
            pairs |= {(function.group(1), name) for name in names}
    return pairs, problems


def resource_of(value, resources: dict) -> tuple[str | None, str | None]:
    """(logical id, type) a dimension value references: Ref X, GetAtt X.QueueName, or "${X}"/"${X.QueueName}"."""
    if isinstance(value, dict):
        if "Ref" in value:
            name = value["Ref"]
        elif "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            name = target.split(".")[0] if isinstance(target, str) else target[0]
        else:
            return None, None
    elif isinstance(value, str) and (m := re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.\w+)?\}", value)):
        name = m.group(1)
    else:
        return None, None
    resource = resources.get(name)
    return name, resource["Type"] if resource else None


def check_metric(where: str, namespace, metric, dimensions: dict, resources: dict, code: set) -> list[str]:
    if namespace == NAMESPACE:
        if set(dimensions) != {"Function"}:
            return [f"{where}: {namespace}/{metric} must have exactly the dimension Function (has {sorted(dimensions)})"]
        function = dimensions["Function"]
        if (function, metric) not in code:
            emitters = sorted(f for f, m in code if m == metric)
            hint = f"emitted only by {', '.join(emitters)}" if emitters else "emitted by no function"
            return [f"{where}: {namespace}/{metric} with Function={function}: the code does not emit it ({hint})"]
        return []
    if namespace not in AWS_METRICS:
        return [f"{where}: namespace {namespace!r} is neither {NAMESPACE} nor one this check knows AWS publishes"]
    metrics, allowed, required = AWS_METRICS[namespace]
    problems = []
    if metric not in metrics:
        problems.append(f"{where}: {namespace} publishes no metric {metric!r} (known: {', '.join(sorted(metrics))})")
    if not required <= set(dimensions) or not set(dimensions) <= set(allowed):
        problems.append(f"{where}: {namespace}/{metric} dimensions {sorted(dimensions)}; AWS publishes {sorted(required)} (optional: {sorted(set(allowed) - required)})")
    for name, value in dimensions.items():
        types = allowed.get(name)
        if types is None:
            continue
        logical_id, kind = resource_of(value, resources)
        if kind not in types:
            problems.append(f"{where}: {namespace}/{metric} {name}={json.dumps(value)} must reference a {' or '.join(sorted(types))} of this template (references {logical_id or 'nothing'})")
    return problems


def if_branches(value) -> list:
    """Both branches of an `!If` (each one's own `!If`s too), or the value itself."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        return if_branches(yes) + if_branches(no)
    return [value]


def alarm_metrics(properties: dict) -> list[tuple[str, object, object, dict]]:
    """(label, namespace, metric, dimensions) of an alarm, metric math included
    (a query under `!If`: each branch)."""
    found = []
    if "MetricName" in properties:
        dims = {d["Name"]: d["Value"] for d in properties.get("Dimensions", [])}
        found.append(("", properties.get("Namespace"), properties["MetricName"], dims))
    queries = [q for query in properties.get("Metrics", []) for q in if_branches(query)]
    for query in queries:
        if not isinstance(query, dict):
            continue  # AWS::NoValue
        stat = query.get("MetricStat")
        if stat:
            metric = stat["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((f" (query {query.get('Id')})", metric.get("Namespace"), metric.get("MetricName"), dims))
    return found


def sub_text(value, truth: dict):
    """The text of a string or `!Sub` with the `!If`s of its variables taken
    by `truth` and the variables put in; `${Resource}` and
    `${Resource.Attribute}` stay (for resource_of). None if not text."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, yes, no = value["Fn::If"]
        return sub_text(yes if truth[name] else no, truth)
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        inner = value["Fn::Sub"]
        text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
        texts = {name: sub_text(v, truth) for name, v in variables.items()}
        if any(t is None for t in texts.values()):
            return None
        return re.sub(r"\$\{([^}!]+)\}", lambda m: texts.get(m.group(1), m.group(0)), text)
    return None


def dashboard_metrics(body) -> tuple[list[tuple[str, str, str, dict]], list[str]]:
    """The metrics of a DashboardBody (`!Sub` JSON, its variables' `!If`s in
    every combination), `.` and `...` shorthand expanded."""
    conditions = sorted(if_conditions(body))
    found, problems = [], []
    for values in itertools.product([True, False], repeat=len(conditions)):
        truth = dict(zip(conditions, values))
        label = ", ".join(f"{name}={'on' if on else 'off'}" for name, on in truth.items())
        more, more_problems = dashboard_body_metrics(sub_text(body, truth), f" ({label})" if label else "")
        found += [m for m in more if m not in found]
        problems += [p for p in more_problems if p not in problems]
    return found, problems


def dashboard_body_metrics(body, label: str) -> tuple[list[tuple[str, str, str, dict]], list[str]]:
    if not isinstance(body, str):
        return [], ["DashboardBody must be a JSON string (or !Sub of one, its variables strings, !Sub or !If)"]
    # `${AWS::Region}` etc. become plain text; `${X}` stays for resource_of.
    text = re.sub(r"\$\{AWS::[A-Za-z]+\}", "pseudo", body)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        return [], [f"DashboardBody{label} is not JSON: {err}"]
    found, problems = [], []
    for index, widget in enumerate(document.get("widgets", [])):
        title = widget.get("properties", {}).get("title", f"widget {index}")
        previous: list = []
        for row in widget.get("properties", {}).get("metrics", []) or []:
            parts = [part for part in row if not isinstance(part, dict)]
            if not parts:
                continue  # an expression
            if parts == ["..."]:
                parts = previous
            elif parts[0] == "...":
                parts = previous[: len(previous) - len(parts) + 1] + parts[1:]
            parts = [previous[i] if part == "." and i < len(previous) else part for i, part in enumerate(parts)]
            previous = parts
            if len(parts) < 2 or len(parts) % 2:
                problems.append(f"dashboard {title!r}: metric row {row} is not [namespace, metric, (name, value)...]")
                continue
            dims = dict(zip(parts[2::2], parts[3::2]))
            found.append((f"dashboard {title!r}", parts[0], parts[1], dims))
    return found, problems


def main() -> None:
    code, problems = emitted()
    template = load_template()
    resources = template["Resources"]
    alarms = 0
    charts = 0
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            alarms += 1
            watched = alarm_metrics(resource["Properties"])
            if not watched:
                problems.append(f"{logical_id}: no metric found")
            for label, namespace, metric, dims in watched:
                problems += check_metric(f"{logical_id}{label}", namespace, metric, dims, resources, code)
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            watched, dashboard_problems = dashboard_metrics(resource["Properties"]["DashboardBody"])
            problems += [f"{logical_id}: {p}" for p in dashboard_problems]
            for label, namespace, metric, dims in watched:
                charts += 1
                problems += check_metric(f"{logical_id} {label}", namespace, metric, dims, resources, code)
    print("emitted: " + ", ".join(f"{f}/{m}" for f, m in sorted(code)))
    fail(problems, f"{alarms} alarms and {charts} chart lines watch metrics the code or AWS emits")


if __name__ == "__main__":
    main()
