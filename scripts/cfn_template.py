"""Shared by the deployment checks (check_iam.py, check_metrics.py,
lint_renderings.py): template.yaml as plain data, and the Rust sources
without comments and string contents, cut into function bodies.

Python standard library plus cfn-lint's YAML decoder (in .venv, from
requirements-dev.txt), which turns the short intrinsic forms (`!Ref`, `!Sub`)
into their long forms (`{"Ref": ...}`, `{"Fn::Sub": ...}`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

# CHECK_ROOT: run the checks on a copy (how their failures are demonstrated).
ROOT = Path(os.environ.get("CHECK_ROOT") or Path(__file__).resolve().parent.parent)
TEMPLATE = ROOT / "template.yaml"
CRATES = ROOT / "crates"


def load_template(path: Path = TEMPLATE) -> dict:
    from cfnlint.decode import cfn_yaml

    # Plain dicts and lists (cfn-lint's node types carry line marks).
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def fail(lines: list[str], what: str) -> None:
    """Prints the problems (one a line) and exits 1, or says what passed."""
    if lines:
        for line in lines:
            print(f"FAIL {line}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


# ------------------------------------------------------------------ Rust text


def strip_rust(text: str) -> str:
    """Comments removed and string/char literal contents blanked, keeping the
    quotes, newlines and offsets, so braces and calls can be found by regex.
    String literals are kept in a side table by `literals` when needed."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(text[i : i + 2 + len(hashes)] + re.sub(r"[^\n]", " ", text[i + 2 + len(hashes) : end - 1 - len(hashes)]) + '"' + hashes)
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1 : j]) + '"')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append("' '" + " " * (len(m.group(0)) - 3))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def without_tests(text: str) -> str:
    """The source before its `#[cfg(test)]` module (tests call anything)."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+", text)
    return text[: m.start()] if m else text


def match_brace(text: str, open_at: int) -> int:
    """The offset just past the `}` matching the `{` at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def functions(text: str) -> list[tuple[str, str, str, bool, int]]:
    """(name, signature, body, public, body offset) of every `fn` with a body in stripped `text`,
    nested ones included. A method of an `impl Trait for Type` block counts
    as public (callers reach it through the trait)."""
    trait_impls = [
        (m.start(), match_brace(text, text.index("{", m.end() - 1)))
        for m in re.finditer(r"\bimpl\b[^{;]*?\bfor\b[^{;]*\{", text)
    ]
    found = []
    for m in re.finditer(r"\b(pub(\([^)]*\))?\s+)?(async\s+)?fn\s+(\w+)", text):
        # The body starts at the first `{` outside the signature's parentheses.
        depth, i = 0, m.end()
        while i < len(text):
            ch = text[i]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                i = -1
                break
            elif ch == "{" and depth == 0:
                break
            i += 1
        if i < 0 or i >= len(text):
            continue
        public = bool(m.group(1)) or any(a <= m.start() < b for a, b in trait_impls)
        found.append((m.group(4), text[m.start() : i], text[i : match_brace(text, i)], public, i))
    return found


def read_rust(path: Path) -> tuple[str, str]:
    """(raw, stripped) source of `path`, tests cut off."""
    raw = without_tests(path.read_text())
    return raw, strip_rust(raw)


# ------------------------------------------------------------------ intrinsics


def if_conditions(value) -> set[str]:
    """The conditions the `!If`s (Fn::If) in a value name."""
    if isinstance(value, dict):
        names = {value["Fn::If"][0]} if set(value) == {"Fn::If"} else set()
        return names.union(*(if_conditions(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(if_conditions(v) for v in value))
    return set()


def references(value) -> set[str]:
    """Every logical id or parameter a template value names (Ref, GetAtt,
    and the `${...}` of Sub), attribute names dropped."""
    names: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                names.add(inner)
            elif key == "Fn::GetAtt":
                target = inner if isinstance(inner, str) else inner[0]
                names.add(target.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
                for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    if var not in variables:
                        names.add(var.split(".")[0])
                names |= references(variables)
            else:
                names |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            names |= references(inner)
    return names
