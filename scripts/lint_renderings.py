#!/usr/bin/env python3
"""Lints template.yaml once for every combination of its conditions.

The parameters the Conditions read get each of their interesting values
(AllowedValues, or the default and the samples in SAMPLES); for every
distinct combination of condition values the template is rendered as
CloudFormation would see it (Fn::If resolved, AWS::NoValue dropped,
resources and outputs whose condition is false removed, the parameter's
default set to the value) and linted with cfn-lint, all in this process.
A parameter a condition reads without a sample here fails the check: add
one when you add an optional feature.

A *switch* is a condition that only turns self-contained resources on or off
(the alarm email's subscription, an EventBridge slot's bus and rule): it is
the Condition of its resources and outputs and appears in no Fn::If and no
other condition; they reference only resources that exist whenever they do
(unconditional ones, or of a condition theirs implies through Fn::And); and
nothing else references them. Such resources cannot change how the rest
lints, so a rendering with a switch off adds nothing to one with it on:
of the combinations that agree on every other condition, only the one with
the most switches on is linted. Every combination of the other conditions
is linted, each with its switched resources in.

Also checks that the architecture is set in one place: samconfig.toml's
[default.global.parameters], which `sam build` and `sam deploy` both read.

Run: .venv/bin/python scripts/lint_renderings.py
"""

from __future__ import annotations

import copy
import itertools
import json
import multiprocessing
import os
import re
import tomllib

from cfn_template import ROOT, fail, if_conditions, load_template, references

# Values other than the default for each parameter a condition reads (a
# string, or a list of them).
SAMPLES = {
    "StripeSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-reports-AbCdEf",
    "SecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "ExistingBucketName": "finance-reports",
    "BucketKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000",
    "AlarmEmail": "finance-oncall@example.com",
    # One Stripe event destination, and the most the template takes (4 slots).
    "StripeEventSources": [
        "aws.partner/stripe.com/ed_test_61SampleOne",
        "aws.partner/stripe.com/ed_61SampleUS,aws.partner/stripe.com/ed_61SampleDE,"
        "aws.partner/stripe.com/ed_61SampleFR,aws.partner/stripe.com/ed_61SampleJP",
    ],
}
# Warnings that only a rendering has: a parameter whose one use was in a
# branch the rendering dropped.
RENDERING_ONLY = ["W2001"]


def substitute(text: str, variables: dict) -> str:
    """Fn::Sub's `${Name}` replaced from `variables`; `${!Literal}` is `${Literal}`."""

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name not in variables:
            raise SystemExit(f"FAIL lint_renderings.py cannot evaluate ${{{name}}} in Conditions (parameters only)")
        return str(variables[name])

    return re.sub(r"\$\{([^}]*)\}", one, text)


def evaluate(expr, values: dict, conditions: dict, cache: dict):
    if isinstance(expr, dict):
        (fn, args), = expr.items()
        if fn == "Condition":
            if args not in cache:
                cache[args] = evaluate(conditions[args], values, conditions, cache)
            return cache[args]
        if fn == "Ref":
            return values[args]
        if fn == "Fn::Equals":
            return str(evaluate(args[0], values, conditions, cache)) == str(evaluate(args[1], values, conditions, cache))
        if fn == "Fn::Not":
            return not evaluate(args[0], values, conditions, cache)
        if fn == "Fn::And":
            return all(evaluate(a, values, conditions, cache) for a in args)
        if fn == "Fn::Or":
            return any(evaluate(a, values, conditions, cache) for a in args)
        # The list functions a condition may use on a parameter (one slot of
        # a comma-separated list: Select of Split of Sub).
        if fn == "Fn::Select":
            index, items = int(evaluate(args[0], values, conditions, cache)), evaluate(args[1], values, conditions, cache)
            return items[index]
        if fn == "Fn::Split":
            return str(evaluate(args[1], values, conditions, cache)).split(args[0])
        if fn == "Fn::Sub":
            text, own = (args, {}) if isinstance(args, str) else args
            own = {name: evaluate(v, values, conditions, cache) for name, v in own.items()}
            return substitute(text, {**values, **own})
        raise SystemExit(f"FAIL lint_renderings.py cannot evaluate {fn} in Conditions")
    return expr


def named_conditions(value) -> set[str]:
    """The conditions a condition's definition names (`{"Condition": X}`)."""
    if isinstance(value, dict):
        names = {value["Condition"]} if set(value) == {"Condition"} else set()
        return names.union(*(named_conditions(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(named_conditions(v) for v in value))
    return set()


def implied(name: str, conditions: dict) -> set[str]:
    """`name` and the conditions its Fn::And names, transitively (true whenever it is)."""
    out = {name}
    definition = conditions.get(name)
    if isinstance(definition, dict) and set(definition) == {"Fn::And"}:
        for part in definition["Fn::And"]:
            if isinstance(part, dict) and set(part) == {"Condition"}:
                out |= implied(part["Condition"], conditions)
    return out


def switches(template: dict) -> set[str]:
    """The conditions that only switch self-contained resources on or off (see above)."""
    conditions = template.get("Conditions", {})
    resources = template.get("Resources", {})
    parts = {(section, name): value for section in ("Resources", "Outputs") for name, value in template.get(section, {}).items()}
    rest = {key: value for key, value in template.items() if key != "Conditions"}
    branched = if_conditions(rest)
    in_conditions = set().union(*(named_conditions(v) for v in conditions.values()))
    found = set()
    for name in conditions:
        switched = {key for key, value in parts.items() if value.get("Condition") == name}
        if name in branched or name in in_conditions or not switched:
            continue
        ids = {logical_id for section, logical_id in switched if section == "Resources"}
        contained = not (references(template.get("Globals", {})) & ids)
        for key, value in parts.items():
            depends = value.get("DependsOn", [])
            named = references(value) | set([depends] if isinstance(depends, str) else depends)
            if key in switched:
                # What it references exists whenever it does.
                present = implied(name, conditions)
                contained &= all(resources[r].get("Condition") in present | {None} for r in named & set(resources))
            else:
                contained &= not (named & ids)
        if contained:
            found.add(name)
    return found


NO_VALUE = object()


def resolve(value, truth: dict):
    """Fn::If resolved by `truth`, AWS::NoValue removed."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return resolve(yes if truth[name] else no, truth)
        if value == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        out = {}
        for key, inner in value.items():
            inner = resolve(inner, truth)
            if inner is not NO_VALUE:
                out[key] = inner
        return out
    if isinstance(value, list):
        return [v for v in (resolve(v, truth) for v in value) if v is not NO_VALUE]
    return value


def render(template: dict, values: dict, truth: dict) -> dict:
    out = copy.deepcopy(template)
    for name, value in values.items():
        out["Parameters"][name]["Default"] = value
    for section in ("Resources", "Outputs"):
        for logical_id in list(out.get(section, {})):
            condition = out[section][logical_id].pop("Condition", None)
            if condition is not None and not truth[condition]:
                del out[section][logical_id]
    out.pop("Conditions", None)
    return resolve(out, truth)


def check_architecture() -> list[str]:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    places = []
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        for command, section in commands.items():
            overrides = section.get("parameters", {}).get("parameter_overrides", "")
            overrides = " ".join(overrides) if isinstance(overrides, list) else overrides
            if re.search(r"\bArchitecture=", overrides):
                places.append(f"[{env}.{command}.parameters]")
    if places != ["[default.global.parameters]"]:
        return [f"samconfig.toml: set Architecture once, in [default.global.parameters] (sam build and sam deploy both read it); found in {places or 'no section'}"]
    return []


RUNNER = None


def lint_one(job: tuple) -> tuple:
    """cfn-lint on one rendering; the rules are loaded once per process."""
    global RUNNER
    from cfnlint.api import ConfigMixIn, Runner, decode_str

    if RUNNER is None:
        RUNNER = Runner(ConfigMixIn(regions=["us-east-1"], ignore_checks=RENDERING_ONLY))
    key, rendered = job
    template, errors = decode_str(rendered)
    matches = errors or list(RUNNER.validate_template(template))
    return key, [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def main() -> None:
    template = load_template()
    conditions = template.get("Conditions", {})
    problems = check_architecture()
    read = sorted(set().union(set(), *(references(c) for c in conditions.values())) & set(template["Parameters"]))
    choices = {}
    for name in read:
        parameter = template["Parameters"][name]
        if "AllowedValues" in parameter:
            choices[name] = [str(v) for v in parameter["AllowedValues"]]
        elif name in SAMPLES:
            samples = SAMPLES[name] if isinstance(SAMPLES[name], list) else [SAMPLES[name]]
            choices[name] = [str(parameter.get("Default", ""))] + samples
            pattern = parameter.get("AllowedPattern")
            problems += [
                f"SAMPLES[{name!r}] {sample!r} does not match the parameter's AllowedPattern"
                for sample in samples
                if pattern and not re.fullmatch(pattern, sample)
            ]
        else:
            problems.append(f"parameter {name} is read by a condition: give it a sample value in SAMPLES (scripts/lint_renderings.py)")
    if problems:
        fail(problems, "")
    switched = switches(template)
    renderings = {}
    for combination in itertools.product(*(choices[name] for name in read)):
        values = dict(zip(read, combination))
        cache: dict = {}
        truth = {name: evaluate({"Condition": name}, values, conditions, cache) for name in conditions}
        # One rendering per combination of the other conditions: the one with the most switches on.
        key = tuple(sorted((name, on) for name, on in truth.items() if name not in switched))
        best = renderings.get(key)
        if best is None or sum(truth[n] for n in switched) > sum(best[1][n] for n in switched):
            renderings[key] = (values, truth)
    jobs = [(tuple(sorted(truth.items())), json.dumps(render(template, values, truth))) for values, truth in renderings.values()]
    # About a second each (cfn-lint runs SAM's transform): one process per core.
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        for key, found in pool.imap_unordered(lint_one, jobs):
            label = ", ".join(f"{name}={'on' if on else 'off'}" for name, on in key)
            problems += [f"with {label}: {line}" for line in found]
    fail(
        problems,
        f"cfn-lint passes on all {len(renderings)} renderings: every combination of {len(conditions) - len(switched)} conditions, "
        f"with the switches {', '.join(sorted(switched)) or '(none)'} on where they can be; Architecture is set once in samconfig.toml",
    )


if __name__ == "__main__":
    main()
