#!/usr/bin/env python3
"""`make bench`: every figure beside its floor, measured in the same run;
writes bench/RESULTS.md (machine, date, commit, one section per benchmark,
each row saying whether its goal holds). One module per benchmark
(downloader, webhook, cold_start, fanout, tables; common.py holds what they
share); what each measures, its floor and its goal: docs/benchmarks.md.

Ratios within this run are what to read: absolute numbers move with the machine.
`--only fanout` (or any comma-separated list of downloader, webhook,
cold-start, fanout, tables) runs some and replaces only their sections of RESULTS.md.
"""
import argparse
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import ROOT, machine  # noqa: E402
import local_aws  # noqa: E402 - common puts scripts/ on the path
import cold_start  # noqa: E402
import downloader  # noqa: E402
import fanout  # noqa: E402
import tables  # noqa: E402
import webhook  # noqa: E402

# The benchmarks in RESULTS.md's order, one module each: NAME (for --only),
# TITLE (the section), NEEDS_AWS, measure(aws_env) -> the section's lines.
BENCHMARKS = [downloader, webhook, cold_start, fanout, tables]


def replace_sections(path, sections):
    """RESULTS.md with only `sections` ({title: lines}) replaced: each from
    its `## title` line up to the next `## ` or the closing `Total time` line."""
    with open(path) as existing:
        lines = existing.read().rstrip("\n").split("\n")
    for title, body in sections.items():
        heading = f"## {title}"
        if heading not in lines:
            # A benchmark newer than the file: its section goes before the total.
            if not lines or not lines[-1].startswith("Total time of"):
                raise RuntimeError(f"{os.path.relpath(path, ROOT)} has no section {heading!r}: run bench/run.py "
                                   "without --only first")
            lines[-1:-1] = [heading]
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i].startswith("Total time of")), len(lines))
        lines[start:end] = body
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [b.NAME for b in BENCHMARKS]
    parser.add_argument("--only", help="comma-separated benchmarks among " + ", ".join(names)
                        + "; replaces only their sections")
    args = parser.parse_args()
    chosen = BENCHMARKS
    if args.only is not None:
        wanted = [part.strip() for part in args.only.split(",") if part.strip()]
        unknown = [part for part in wanted if part not in names]
        if unknown or not wanted:
            print(f"bench/run.py: --only {args.only!r}: no benchmark {', '.join(unknown) or '(none given)'}; "
                  f"benchmarks are {', '.join(names)}", file=sys.stderr)
            return 2
        chosen = [b for b in BENCHMARKS if b.NAME in wanted]
    started = time.time()
    os.makedirs(os.path.join(ROOT, ".local"), exist_ok=True)
    if not any(b.NEEDS_AWS for b in chosen):
        sections = [(b.TITLE, b.measure(None)) for b in chosen]
    else:
        port = int(os.environ.get("MOTO_PORT", "5000"))
        endpoint, moto = local_aws.start_moto(port)
        try:
            aws_env = dict(os.environ, **local_aws.DEFAULTS)
            aws_env["AWS_ENDPOINT_URL"] = endpoint
            local_aws.create_resources(aws_env)
            sections = [(b.TITLE, b.measure(aws_env)) for b in chosen]
        finally:
            local_aws.stop(moto)
    results = os.path.join(HERE, "RESULTS.md")
    bodies = {title: [f"## {title}", "", *lines, ""] for title, lines in sections}
    if chosen is BENCHMARKS:
        text = ["# Benchmark results", "", "Written by `make bench` (`bench/run.py`); read the ratios, measured "
                "in the", "same run, rather than the absolute numbers.", ""] + machine() + [""]
        for title, _ in sections:
            text += bodies[title]
        text.append(f"Total time of `make bench` (after the build): {time.time() - started:.0f} s.")
    else:
        # The header's date and commit are the full run's: say when these were measured.
        stamp = (f"(Measured {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
                 f"commit {machine()[1][len('- commit: '):]}, by `bench/run.py --only {args.only}`, "
                 f"in {time.time() - started:.0f} s.)")
        text = replace_sections(results, {title: body + [stamp, ""] for title, body in bodies.items()})
    with open(results, "w") as out:
        out.write("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
