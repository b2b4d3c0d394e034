"""5. Tables: CSV → Parquet against DuckDB single-threaded, and what the
conversion costs at each Lambda memory size."""
import json
import os
import re
import statistics

from common import (HERE, LAMBDA_ARM64_PRICE_PER_GB_SECOND, LAMBDA_MEMORY_SIZES_MB, LAMBDA_PRICE_PER_GB_SECOND, MB_PER_VCPU, MIB, RELEASE, ROOT,
                    VENV_BIN, cpu_share, cpu_share_available, goal_cell, template_function, log, peak_rss_and_cpu, run)

NAME = "tables"
TITLE = "Tables (CSV → Parquet)"
NEEDS_AWS = False


CONVERT_RSS = os.path.join(RELEASE, "examples", "convert_rss")
TABLES_REPEATS = int(os.environ.get("BENCH_TABLES_REPEATS", "3"))
# The CSV the cost table converts at every Lambda size: 1 GiB is the size
# the function must handle; BENCH_TABLES_COST_MIB=100 (scaled to 1 GiB) is
# about ten times quicker.
COST_MIB = int(os.environ.get("BENCH_TABLES_COST_MIB", "1024"))
# A 1 GiB CSV must convert within this share of the function's timeout:
# the end-to-end conversion (S3 in and out) took about 1.5× the disk-to-disk
# one (bench/converter_memory.py), and a bigger file must still fit.
TIMEOUT_MARGIN = 0.5
# Sizes whose cost per GiB is within this factor of the cheapest count as
# equally cheap; among them the fastest is chosen.
COST_TIE = 1.10
# DuckDB in its own Python process: its peak RSS before the COPY (Python,
# the duckdb module, a connection) is printed, so it can be read apart.
DUCKDB_CHILD = """
import json, sys, time, duckdb
def hwm():
    with open('/proc/self/status') as status:
        return next(int(l.split()[1]) for l in status if l.startswith('VmHWM:'))
csv, out, options = sys.argv[1], sys.argv[2], sys.argv[3]
db = duckdb.connect()
db.execute('SET threads=1')
start = hwm()
wall, cpu = time.perf_counter(), time.process_time()
db.execute(f"COPY (SELECT * FROM read_csv('{csv}'{options})) TO '{out}' (FORMAT parquet)")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
rows = db.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(json.dumps({'start_kib': start, 'rows': rows, 'seconds': wall, 'cpu': cpu}))
"""


def converted_rows(stdout):
    return int(re.search(r"\|\s*(\d+) rows", stdout).group(1))


def bench_cost(csv, size, unconstrained):
    """The release conversion of `csv` (`size` MiB) at each Lambda memory
    size's CPU share (a cgroup v1 CPU quota where one can be set, else its
    CPU seconds ÷ the share), scaled to 1 GiB of CSV: seconds, MiB/s,
    GB-seconds and dollars per GiB, and whether a 1 GiB CSV fits the
    template's timeout (with margin) and the size's memory. `unconstrained`
    is the same conversion's (wall s, CPU s) with the whole machine: its CPU
    seconds ÷ the share is the row's floor."""
    template_mb, timeout = template_function("ConverterFunction")
    quota = cpu_share_available()
    out = csv + ".cost.parquet"
    scale = 1024 / size
    rows, measured = [], []
    for memory_mb in LAMBDA_MEMORY_SIZES_MB:
        share = memory_mb / MB_PER_VCPU
        argv = [CONVERT_RSS, "--file", csv, "--out", out]
        if quota:
            log(f"tables: cost: {size:.0f} MiB in the CPU quota of {memory_mb} MB ({share:.3f} vCPU)")
            with cpu_share(memory_mb) as enter:
                seconds, cpu, rss, _ = peak_rss_and_cpu(argv, preexec_fn=enter)
        else:
            seconds, cpu, rss, _ = peak_rss_and_cpu(argv)
            seconds = max(seconds, cpu / share)
        os.remove(out)
        seconds_per_gib = seconds * scale
        # One thread cannot use more than one CPU: at a whole vCPU the floor is the unconstrained wall time.
        floor = unconstrained[1] / share if share < 1 else unconstrained[0]
        gb_seconds = memory_mb / 1024 * seconds_per_gib
        fits_time = seconds_per_gib <= timeout * TIMEOUT_MARGIN
        fits_memory = rss * MIB <= memory_mb * 1_000_000
        measured.append((memory_mb, seconds_per_gib, gb_seconds, fits_time and fits_memory))
        log(f"tables: cost: {memory_mb} MB: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.1f} MiB")
        rows.append([memory_mb, share, seconds, seconds_per_gib, size / seconds, seconds / floor, rss, gb_seconds,
                     fits_time, fits_memory])
    # The rule: among the sizes that fit, the cheapest per GiB; sizes within
    # COST_TIE of it cost the same, and the fastest of those is chosen.
    fitting = [m for m in measured if m[3]]
    cheapest = min(m[2] for m in fitting) if fitting else None
    chosen = min((m for m in fitting if m[2] <= cheapest * COST_TIE), key=lambda m: m[1])[0] if fitting else None
    table = [
        f"| Lambda MB | vCPU share | seconds for {size:.0f} MiB | seconds per GiB | MiB/s | ratio to the floor "
        "(unconstrained CPU s ÷ share) | peak RSS MiB | GB-s per GiB | $ per GiB (x86_64) | $ per GiB (arm64) "
        f"| 1 GiB within {timeout * TIMEOUT_MARGIN:.0f} s ({TIMEOUT_MARGIN:.0%} of the {timeout} s timeout) "
        "| peak RSS ≤ MB | fits (goal) | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for memory_mb, share, seconds, per_gib, speed, ratio, rss, gb_seconds, fits_time, fits_memory in rows:
        mark = ("**chosen**" if memory_mb == chosen else "") + (" (template)" if memory_mb == template_mb else "")
        table.append(
            f"| {memory_mb:,} | {share:.3f} | {seconds:.1f} | {per_gib:.0f} | {speed:.1f} | {ratio:.2f} "
            f"| {rss:.1f} | {gb_seconds:.1f} | {gb_seconds * LAMBDA_PRICE_PER_GB_SECOND:.6f} "
            f"| {gb_seconds * LAMBDA_ARM64_PRICE_PER_GB_SECOND:.6f} | {'yes' if fits_time else 'no'} "
            f"| {'yes' if fits_memory else 'no'} | {goal_cell(fits_time and fits_memory)} | {mark.strip() or '—'} |")
    how = ("each in a cgroup v1 CPU quota of its share (`cpu.cfs_quota_us` per 100 ms period, set by "
           "`cpu_share` in bench/common.py; 1,769 MB gets one whole CPU)" if quota else
           "no CPU quota can be set here (not root, or no cgroup v1 `cpu` controller), so each size's seconds are "
           "derived: the longer of the measured wall time and CPU seconds ÷ share")
    table += ["", (
        f"Cost: the release `convert_rss --file csv --out parquet` of the {size:.0f} MiB emulator CSV (the "
        f"comparison's file), once per Lambda size, {how}; seconds per GiB scale the measured time by "
        f"{scale:.2f}. GB-s per GiB = MB ÷ 1,024 × seconds per GiB; dollars at ${LAMBDA_PRICE_PER_GB_SECOND:.10f} "
        f"(x86_64) and ${LAMBDA_ARM64_PRICE_PER_GB_SECOND:.10f} (arm64, the template's default) per GB-second, the "
        "per-request charge left out. The floor of a row is the unconstrained run's CPU seconds ÷ the share "
        "(its wall time at 1,769 MB): a ratio above 1 is what the quota's 100 ms slices and the machine's other "
        "load add. The conversion is one thread (CSV parsing, typing and encoding in turn), so it uses at most "
        "one vCPU: Lambda gives up to one vCPU below 1,769 MB and more above it, which this converter would "
        "leave idle (the function adds a Tokio runtime for the S3 download and upload beside the converting "
        "thread, a small share; the quota models the total). Peak RSS is the disk-to-disk conversion's; the "
        "function's whole process adds its runtime, SDK clients and upload parts (105 MiB at 1 GiB in the "
        "end-to-end table below), still inside 128 MB (122 MiB)."),
        "", choice(chosen, cheapest, measured, template_mb)]
    return ["### Cost per Lambda memory size", ""] + table


def choice(chosen, cheapest, measured, template_mb):
    """The cost table's closing paragraph: the rule, and what it chose."""
    rule = ("Choice: among the sizes that fit (a 1 GiB CSV within the margin of the timeout, peak RSS within the "
            f"size), the cheapest per GiB; sizes within {COST_TIE - 1:.0%} of the cheapest cost the same, and the "
            "fastest of those is chosen. ")
    if chosen is None:
        return rule + "No size fits: the converter needs a longer timeout or less memory per file."
    _, seconds, gb_seconds, _ = next(m for m in measured if m[0] == chosen)
    template = ("this run's choice" if chosen == template_mb else "**which differs from this run's choice**")
    return rule + (f"Chosen: {chosen:,} MB ({seconds:.0f} s and {gb_seconds:.1f} GB-s per GiB; the cheapest "
                   f"fitting size costs {cheapest:.1f}). The template's ConverterFunction has {template_mb:,} MB, "
                   f"{template}.")


def bench_tables():
    """CSV → Parquet of the emulator's itemized balance report at 10 MiB,
    100 MiB and 1 GiB: the release conversion (`convert_rss --file … --out
    …`) beside DuckDB's `COPY (SELECT * FROM read_csv(…)) TO … (FORMAT
    parquet)` with `SET threads=1`, on the same files, runs interleaved;
    then the cost table on the COST_MIB file."""
    import tempfile

    sizes = [("10 MiB", 10, TABLES_REPEATS), ("100 MiB", 100, TABLES_REPEATS), ("1 GiB", 1024, 2)]
    if COST_MIB not in [mib for _, mib, _ in sizes]:
        raise RuntimeError(f"BENCH_TABLES_COST_MIB={COST_MIB}: the cost table converts one of the compared "
                           f"files: {', '.join(str(mib) for _, mib, _ in sizes)}")
    tools = [("ours", None), ("duckdb", ""), ("duckdb all_varchar", ", all_varchar=true")]
    table = [
        "| size | ours MiB/s | DuckDB MiB/s | speed ratio (ours / DuckDB) | ours peak RSS MiB | DuckDB peak RSS MiB "
        "| memory ratio (ours / DuckDB) | ≥ 1.0× speed at a fraction (< 1) of the memory | ours output MiB "
        "| DuckDB output MiB | ours CPU MiB/s | DuckDB CPU MiB/s | DuckDB all_varchar MiB/s, peak RSS MiB, output MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    start_kib, speed, memory, ours_rss, duck_rss, holds = [], [], [], [], [], []
    cost = []
    with tempfile.TemporaryDirectory(prefix="bench-tables-", dir=os.path.join(ROOT, ".local")) as work:
        for label, mib, repeats in sizes:
            csv = os.path.join(work, f"emulator-{mib}mib.csv")
            log(f"tables: generating {label} of emulator CSV")
            run([CONVERT_RSS, "--generate", str(mib), csv, "--emulator"])
            size = os.path.getsize(csv) / MIB
            samples = {name: [] for name, _ in tools}
            for repeat in range(repeats):
                for name, options in tools:
                    out = os.path.join(work, f"{name.replace(' ', '-')}.parquet")
                    if options is None:
                        argv = [CONVERT_RSS, "--file", csv, "--out", out]
                    else:
                        argv = [os.path.join(VENV_BIN, "python"), "-c", DUCKDB_CHILD, csv, out, options]
                    seconds, cpu, rss, stdout = peak_rss_and_cpu(argv)
                    if options is None:
                        rows = converted_rows(stdout)
                    else:
                        # DuckDB's speed is its COPY's, timed inside the child
                        # (Python's start and `import duckdb` left out).
                        copied = json.loads(stdout.strip().splitlines()[-1])
                        start_kib.append(copied["start_kib"])
                        seconds, cpu = copied["seconds"], copied["cpu"]
                        if copied["rows"] != rows:
                            raise RuntimeError(f"{label}: {name} wrote {copied['rows']} rows, ours {rows}")
                    samples[name].append((seconds, cpu, rss, os.path.getsize(out) / MIB))
                    log(f"tables: {label} {name} #{repeat + 1}: {seconds:.2f} s wall, {cpu:.2f} s CPU, "
                        f"peak RSS {rss:.1f} MiB, {samples[name][-1][3]:.1f} MiB out")
                    os.remove(out)

            def med(name, i):
                return statistics.median(sample[i] for sample in samples[name])

            if mib == COST_MIB:
                cost = bench_cost(csv, size, (med("ours", 0), med("ours", 1)))
            os.remove(csv)
            ours = size / med("ours", 0)
            duck = size / med("duckdb", 0)
            varchar = size / med("duckdb all_varchar", 0)
            speed.append(ours / duck)
            memory.append(med("ours", 2) / med("duckdb", 2))
            ours_rss.append(med("ours", 2))
            duck_rss.append(med("duckdb", 2))
            holds.append(speed[-1] >= 1.0 and memory[-1] < 1.0)
            table.append(
                f"| {label} ({size:.0f} MiB, {repeats}×) | {ours:.1f} | {duck:.1f} | {ours / duck:.2f}× "
                f"| {med('ours', 2):.1f} | {med('duckdb', 2):.1f} | {memory[-1]:.2f} | {goal_cell(holds[-1])} "
                f"| {med('ours', 3):.1f} | {med('duckdb', 3):.1f} | {size / med('ours', 1):.1f} "
                f"| {size / med('duckdb', 1):.1f} | {varchar:.1f}, {med('duckdb all_varchar', 2):.1f}, "
                f"{med('duckdb all_varchar', 3):.1f} |")
    table += ["", f"DuckDB's process holds {statistics.median(start_kib) / 1024:.0f} MiB before the COPY (Python, "
                  "the duckdb module and a connection): its peak RSS includes them, ours includes the whole "
                  "conversion binary (a few MiB at start). DuckDB's times are its COPY's, timed in its process "
                  "(Python's start and `import duckdb` left out); ours are the whole process's. Both wrote the "
                  "same number of rows at every size (checked).",
              "", f"Conclusion: the goal is at least DuckDB's single-threaded speed at a fraction of its memory; "
                  f"it {'holds at every size' if all(holds) else '**does not hold at every size**'}. "
                  f"Ours ran at {min(speed):.2f}–{max(speed):.2f}× DuckDB's `threads=1` speed with "
                  f"{min(memory):.2f}–{max(memory):.2f} of its peak RSS (ours {ours_rss[0]:.0f} to "
                  f"{ours_rss[-1]:.0f} MiB from 10 MiB to 1 GiB, bounded by the row-group budget; DuckDB's "
                  f"{duck_rss[0]:.0f} to {duck_rss[-1]:.0f} MiB), and wrote smaller files (zstd against DuckDB's "
                  "default snappy; amounts DECIMAL(38,3) where DuckDB's sniffer reads DOUBLE)."]
    return table, cost


END_TO_END = "### The converter function end to end"


def end_to_end_subsection():
    """The `### The converter function end to end` subsection of this
    section in RESULTS.md, measured apart by `make bench-converter`
    (bench/converter_memory.py needs moto and is not run here): carried over
    so that rewriting this section does not drop it."""
    try:
        with open(os.path.join(HERE, "RESULTS.md")) as results:
            lines = results.read().split("\n")
    except FileNotFoundError:
        return []
    heading = f"## {TITLE}"
    if heading not in lines:
        return []
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("## ") or lines[i].startswith("Total time of")), len(lines))
    sub = next((i for i in range(start, end) if lines[i].startswith(END_TO_END)), None)
    if sub is None:
        return []
    # bench/run.py's own stamp ("(Measured …, by `bench/run.py --only …`)") is written again after the section.
    kept = [line for line in lines[sub:end] if not (line.startswith("(Measured") and "bench/run.py" in line)]
    while kept and not kept[-1].strip():
        kept.pop()
    return [""] + kept


def measure(aws_env):
    carried = end_to_end_subsection()
    comparison, cost = bench_tables()
    return comparison + ["", NOTE, ""] + cost + carried


NOTE = "The emulator's `balance_change_from_activity.itemized.3` report (its default columns; `convert_rss --generate N --emulator`), written to disk once per size, then converted in fresh processes, the tools interleaved, on the same file; medians of the repeats. MiB/s: CSV MiB per wall second (CPU column: per CPU second, user + system); peak RSS: GNU time's maximum resident set of the child (`/usr/bin/time -f %M`, a small process forking it: a child forked straight from the benchmark's Python process would count that process's pages in its `ru_maxrss`). Ours: the release `convert_rss --file csv --out parquet` (`tables::convert`, default options: typed by column name, 8,192-row batches, 16 MiB row groups, zstd level 1, rows checked against the footer). DuckDB: `SET threads=1; COPY (SELECT * FROM read_csv('…')) TO '…' (FORMAT parquet)` in a Python process, `read_csv` with its auto-detection (the sniffer types the columns) and DuckDB's default Parquet settings (snappy, 122,880-row row groups); the all_varchar column is the same with `read_csv('…', all_varchar=true)` (no typing). The sniffer typed the amounts DOUBLE, the timestamps TIMESTAMP, is_link BOOLEAN, the rest VARCHAR. A speed ratio above 1 means ours is faster; a memory ratio below 1 means ours uses less. Machine: the header's, shared with other builds during the run, hence ratios in one run."
