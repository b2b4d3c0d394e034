#!/usr/bin/env python3
"""Lints template.yaml once for every combination of its conditions.

The parameters the Conditions read get each of their interesting values
(AllowedValues, or the default and a sample from SAMPLES); for every
distinct combination of condition values the template is rendered as
CloudFormation would see it (Fn::If resolved, AWS::NoValue dropped,
resources and outputs whose condition is false removed, the parameter's
default set to the value) and linted with cfn-lint, all in this process.
A parameter a condition reads without a sample here fails the check: add
one when you add an optional feature.

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

from cfn_template import ROOT, fail, load_template

# A value other than the default for each parameter a condition reads.
SAMPLES = {
    "StripeSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-reports-AbCdEf",
    "SecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "ExistingBucketName": "finance-reports",
    "BucketKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000",
    "AlarmEmail": "finance-oncall@example.com",
}
# Warnings that only a rendering has: a parameter whose one use was in a
# branch the rendering dropped.
RENDERING_ONLY = ["W2001"]


def parameters_read(value) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        return set().union(set(), *(parameters_read(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(set(), *(parameters_read(v) for v in value))
    return set()


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
        raise SystemExit(f"FAIL lint_renderings.py cannot evaluate {fn} in Conditions")
    return expr


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
    read = sorted(set().union(set(), *(parameters_read(c) for c in conditions.values())) & set(template["Parameters"]))
    choices = {}
    for name in read:
        parameter = template["Parameters"][name]
        if "AllowedValues" in parameter:
            choices[name] = [str(v) for v in parameter["AllowedValues"]]
        elif name in SAMPLES:
            choices[name] = [str(parameter.get("Default", "")), SAMPLES[name]]
            pattern = parameter.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, SAMPLES[name]):
                problems.append(f"SAMPLES[{name!r}] does not match the parameter's AllowedPattern")
        else:
            problems.append(f"parameter {name} is read by a condition: give it a sample value in SAMPLES (scripts/lint_renderings.py)")
    if problems:
        fail(problems, "")
    renderings = {}
    for combination in itertools.product(*(choices[name] for name in read)):
        values = dict(zip(read, combination))
        cache: dict = {}
        truth = {name: evaluate({"Condition": name}, values, conditions, cache) for name in conditions}
        renderings.setdefault(tuple(sorted(truth.items())), (values, truth))
    jobs = [(key, json.dumps(render(template, values, truth))) for key, (values, truth) in renderings.items()]
    # About a second each (cfn-lint runs SAM's transform): one process per core.
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        for key, found in pool.imap_unordered(lint_one, jobs):
            label = ", ".join(f"{name}={'on' if on else 'off'}" for name, on in key)
            problems += [f"with {label}: {line}" for line in found]
    fail(problems, f"cfn-lint passes on all {len(renderings)} renderings of {len(conditions)} conditions; Architecture is set once in samconfig.toml")


if __name__ == "__main__":
    main()
