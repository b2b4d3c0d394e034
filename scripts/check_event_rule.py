#!/usr/bin/env python3
"""Fails when template.yaml's EventBridge rules would not send Stripe's three
reporting events to the eventbridge function's queue, or would send anything
else.

1. The slots (StripeEventBus1..4, StripeEventRule1..4) are copies: each bus
   takes the Nth name of StripeEventSources as its Name and EventSourceName
   (the association with the partner event source), each rule is on its own
   slot's bus under the same condition, and the rules' EventPattern and
   Targets are the same. The queue policy lets EventBridge send to both
   queues for a rule ARN of that shape.
2. Against moto's EventBridge and SQS (in process, moto.mock_aws): the partner
   event source of events/eventbridge-report-run-succeeded.json is created
   (what Stripe does), a bus of its name associated with it (what the
   template does), the rule put with the template's target (the queue,
   RetryPolicy, DeadLetterConfig to the DLQ); then each event below is put on
   the bus. (moto 5 addresses a bus by the last `/` segment of its name or
   ARN in PutRule and PutEvents, so the rule and the events go to a bus named
   that segment; the pattern matching and the target are moto's own.) The queue must receive exactly the three reporting events, each
   body an EventBridge event whose `detail` is the Stripe event (what the
   eventbridge function reads), and nothing from another source (another
   partner, `aws.partner/stripe.community/...`, `stripe.com`) or of another
   Stripe event type (`charge.succeeded`).

Run: .venv/bin/python scripts/check_event_rule.py
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os

from cfn_template import ROOT, fail, load_template

SAMPLE = ROOT / "events" / "eventbridge-report-run-succeeded.json"
SLOTS = 4
ACCOUNT, REGION = "123456789012", "us-east-1"
REPORTING = ["reporting.report_run.succeeded", "reporting.report_run.failed", "reporting.report_type.updated"]


def slot_problems(resources: dict) -> list[str]:
    problems = []
    rules = {}
    for n in range(1, SLOTS + 1):
        bus, rule = resources.get(f"StripeEventBus{n}"), resources.get(f"StripeEventRule{n}")
        if not bus or not rule:
            problems.append(f"StripeEventBus{n} and StripeEventRule{n}: missing (one slot per name of StripeEventSources, {SLOTS} slots)")
            continue
        name = {"Fn::Select": [n - 1, {"Fn::Split": [",", {"Ref": "StripeEventSources"}]}]}
        props = bus.get("Properties", {})
        if bus.get("Type") != "AWS::Events::EventBus" or props.get("Name") != name or props.get("EventSourceName") != name:
            problems.append(f"StripeEventBus{n}: must be an AWS::Events::EventBus whose Name and EventSourceName are name {n} of StripeEventSources")
        for logical_id, resource in ((f"StripeEventBus{n}", bus), (f"StripeEventRule{n}", rule)):
            if resource.get("Condition") != f"HasEventSource{n}":
                problems.append(f"{logical_id}: must have Condition HasEventSource{n}")
        if rule.get("Properties", {}).get("EventBusName") != {"Ref": f"StripeEventBus{n}"}:
            problems.append(f"StripeEventRule{n}: EventBusName must be !Ref StripeEventBus{n}")
        rules[n] = rule.get("Properties", {})
    for n, props in rules.items():
        for key in ("EventPattern", "Targets", "State"):
            if props.get(key) != rules[1].get(key):
                problems.append(f"StripeEventRule{n}: its {key} differs from StripeEventRule1's (the slots are copies)")
    return problems


def policy_patterns(resources: dict) -> tuple[dict[str, list[str]], list[str]]:
    """queue logical id → the aws:SourceArn patterns EventBridge may send to it with."""
    out: dict[str, list[str]] = {}
    problems = []
    policies = [r for r in resources.values() if r.get("Type") == "AWS::SQS::QueuePolicy"]
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Effect") != "Allow" or statement.get("Principal") != {"Service": "events.amazonaws.com"}:
                continue
            arn_like = statement.get("Condition", {}).get("ArnLike", {}).get("aws:SourceArn")
            if not isinstance(arn_like, dict) or set(arn_like) != {"Fn::Sub"} or not isinstance(arn_like["Fn::Sub"], str):
                problems.append("the queue policy for events.amazonaws.com must restrict aws:SourceArn with ArnLike to one !Sub pattern")
                continue
            pattern = arn_like["Fn::Sub"].replace("${AWS::Partition}", "aws").replace("${AWS::Region}", REGION).replace("${AWS::AccountId}", ACCOUNT)
            targets = statement.get("Resource")
            for target in targets if isinstance(targets, list) else [targets]:
                get_att = target.get("Fn::GetAtt") if isinstance(target, dict) else None
                if isinstance(get_att, list) and get_att[1:] == ["Arn"]:
                    out.setdefault(get_att[0], []).append(pattern)
    return out, problems


def resolve_target(value, arns: dict):
    """The rule's target with `!GetAtt Queue.Arn` replaced by moto's ARNs."""
    if isinstance(value, dict):
        if set(value) == {"Fn::GetAtt"}:
            target, attribute = value["Fn::GetAtt"]
            if attribute != "Arn" or target not in arns:
                raise SystemExit(f"FAIL check_event_rule.py: the rule's target names {target}.{attribute}; only the queues' Arn is known here")
            return arns[target]
        return {key: resolve_target(inner, arns) for key, inner in value.items()}
    if isinstance(value, list):
        return [resolve_target(inner, arns) for inner in value]
    return value


def cases(sample: dict) -> list[tuple[str, dict, bool]]:
    """(what, EventBridge event, whether the rule must send it to the queue)."""

    def variant(event_type: str | None = None, source: str | None = None, obj: dict | None = None) -> dict:
        event = copy.deepcopy(sample)
        if event_type:
            event["detail-type"] = event["detail"]["type"] = event_type
        if source:
            event["source"] = source
        if obj is not None:
            event["detail"]["data"]["object"] = obj
        event["detail"]["id"] = f"evt_check_{len(made)}"
        made.append(event)
        return event

    made: list[dict] = []
    run = sample["detail"]["data"]["object"]
    failed = {**run, "status": "failed", "result": None, "error": "Unable to generate the report."}
    report_type = {"id": run["report_type"], "object": "reporting.report_type", "data_available_end": run["parameters"]["interval_end"],
                   "data_available_start": 1577836800, "livemode": False, "name": "Balance summary", "updated": sample["detail"]["created"], "version": 1}
    return [
        ("the sample (reporting.report_run.succeeded)", variant(), True),
        ("reporting.report_run.failed", variant("reporting.report_run.failed", obj=failed), True),
        ("reporting.report_type.updated", variant("reporting.report_type.updated", obj=report_type), True),
        ("another partner's source aws.partner/other.com/x", variant(source="aws.partner/other.com/x"), False),
        ("source aws.partner/stripe.community/ed_x", variant(source="aws.partner/stripe.community/ed_x"), False),
        ("source stripe.com", variant(source="stripe.com"), False),
        ("a Stripe event of another type (charge.succeeded)", variant("charge.succeeded", obj={"id": "ch_1", "object": "charge"}), False),
    ]


def moto_problems(template: dict, sample: dict) -> list[str]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION})
    os.environ.pop("AWS_ENDPOINT_URL", None)  # in process, not a moto server
    import boto3
    from moto import mock_aws

    resources = template["Resources"]
    rule = resources["StripeEventRule1"]["Properties"]
    source = sample["source"]
    problems = []
    with mock_aws():
        sqs, events = boto3.client("sqs", region_name=REGION), boto3.client("events", region_name=REGION)
        urls, arns = {}, {}
        for logical_id in ("StripeEventQueue", "StripeEventDeadLetterQueue"):
            urls[logical_id] = sqs.create_queue(QueueName=logical_id)["QueueUrl"]
            arns[logical_id] = sqs.get_queue_attributes(QueueUrl=urls[logical_id], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.create_partner_event_source(Name=source, Account=ACCOUNT)
        events.create_event_bus(Name=source, EventSourceName=source)
        # moto's stand-in for the partner bus in PutRule/PutEvents (see above).
        bus = source.rsplit("/", 1)[-1]
        events.create_event_bus(Name=bus)
        events.put_rule(Name="stripe-events", EventBusName=bus, EventPattern=json.dumps(rule["EventPattern"]))
        # A rule on a custom bus is rule/<bus name>/<rule name> (EventBridge's ARN format).
        rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{source}/stripe-events"
        answer = events.put_targets(Rule="stripe-events", EventBusName=bus, Targets=resolve_target(rule["Targets"], arns))
        if answer["FailedEntryCount"]:
            problems.append(f"moto refused the rule's targets: {answer['FailedEntries']}")
        patterns, policy_problems = policy_patterns(resources)
        problems += policy_problems
        for logical_id in ("StripeEventQueue", "StripeEventDeadLetterQueue"):
            if not any(fnmatch.fnmatchcase(rule_arn, p) for p in patterns.get(logical_id, [])):
                problems.append(f"the queue policy does not let EventBridge send to {logical_id} for the rule {rule_arn} (patterns: {patterns.get(logical_id, [])})")
        for what, event, expected in cases(sample):
            answer = events.put_events(Entries=[{
                "Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"], "EventBusName": bus,
            }])
            if answer["FailedEntryCount"]:
                problems.append(f"{what}: moto refused the event: {answer['Entries']}")
                continue
            bodies = []
            while messages := sqs.receive_message(QueueUrl=urls["StripeEventQueue"], MaxNumberOfMessages=10).get("Messages", []):
                for message in messages:
                    bodies.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=urls["StripeEventQueue"], ReceiptHandle=message["ReceiptHandle"])
            if not expected:
                if bodies:
                    problems.append(f"{what}: the rule sends it to the queue; it must not")
                continue
            if len(bodies) != 1:
                problems.append(f"{what}: the queue received {len(bodies)} messages, not 1")
                continue
            body = bodies[0]
            # EventBridge's envelope (moto leaves out `account`); the function
            # reads `source`, `detail-type` and `detail`.
            envelope = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
            required = {"version", "id", "detail-type", "source", "detail"}
            if not required <= set(body) <= envelope or any(body[k] != event[k] for k in ("source", "detail-type", "detail")):
                problems.append(f"{what}: the message body is not the EventBridge event with the Stripe event in detail: {json.dumps(body)[:300]}")
    return problems


def main() -> None:
    template = load_template()
    resources = template["Resources"]
    if not SAMPLE.exists():
        fail([f"{SAMPLE.relative_to(ROOT)} is missing (the sample EventBridge event the rule must match)"], "")
    sample = json.loads(SAMPLE.read_text())
    problems = []
    if sample.get("detail-type") != "reporting.report_run.succeeded" or not str(sample.get("source", "")).startswith("aws.partner/stripe.com/"):
        problems.append(f"{SAMPLE.relative_to(ROOT)}: must be a reporting.report_run.succeeded event from aws.partner/stripe.com/<destination>")
    problems += slot_problems(resources)
    if problems:
        fail(problems, "")
    problems += moto_problems(template, sample)
    fail(problems, f"the {SLOTS} EventBridge rules are copies; on moto, the rule sends the 3 reporting events ({', '.join(REPORTING)}) "
         "to the queue as EventBridge events and nothing from another source or of another type")


if __name__ == "__main__":
    main()
