#!/usr/bin/env python3
"""Validates captured API answers against Stripe's OpenAPI description.

usage: contract_validate.py OPENAPI_JSON CAPTURES_JSON

CAPTURES_JSON is a list of {"method", "path" (an OpenAPI path template),
"status", "body"}. A 2xx body is checked against the path's 200 response
schema, any other against its `default` (error) schema. OpenAPI 3.0's
`nullable: true` is rewritten to JSON Schema (Stripe puts it beside `anyOf`
without a `type`: read as "may be null"), and every object schema with
`properties` is closed (additionalProperties: false) unless it says
otherwise, so a misspelt field in the emulator fails too.
Prints one line per capture and exits 1 if any fails.
"""
import copy
import json
import sys

import jsonschema


def convert(node):
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: convert(value) for key, value in node.items()}
    if "properties" in out and out.get("type", "object") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if "type" in out:
            kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = kinds + ["null"]
            if "enum" in out:
                out["enum"] = out["enum"] + [None]
        elif "anyOf" in out:
            out["anyOf"] = out["anyOf"] + [{"type": "null"}]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def main():
    spec = json.load(open(sys.argv[1]))
    captures = json.load(open(sys.argv[2]))
    components = convert(spec["components"])
    failures = 0
    for capture in captures:
        op = spec["paths"][capture["path"]][capture["method"].lower()]
        which = "200" if 200 <= capture["status"] < 300 else "default"
        schema = copy.deepcopy(op["responses"][which]["content"]["application/json"]["schema"])
        root = {"components": components, "allOf": [convert(schema)]}
        validator = jsonschema.Draft7Validator(root)
        errors = sorted(validator.iter_errors(capture["body"]), key=lambda e: list(e.path))
        label = "%s %s %d" % (capture["method"].upper(), capture["path"], capture["status"])
        if errors:
            failures += 1
            for error in errors[:5]:
                print("FAIL %s: %s at %s" % (label, error.message[:300], "/".join(map(str, error.path))))
        else:
            print("ok   %s" % label)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
