#!/usr/bin/env python3
"""SQL over the report tables with DuckDB, checked against the CSVs they came from.

    python scripts/demo_sql.py <folder>

<folder> is in the layout `stripe-reports fetch --format both` writes and the
bucket holds under REPORTS_PREFIX (SPEC "S3 objects" and "Tables"):

    <folder>/account=<acct>/report_type=<type>/date=<d>/<run id>.csv
    <folder>/tables/<table>/account=<acct>/date=<d>/<run id>.parquet

For every account and report type it prints the row count and, for the
types with a net amount and a category (`net` and `reporting_category`;
`net_amount` and `category` in `balance.summary.1`), the sum of net per
category and currency (a sum across currencies means nothing). Each figure
is computed twice:

- with DuckDB, over the Parquet files only (`read_parquet(…, hive_partitioning
  = true)`, the account taken from the partition path);
- from the CSVs only, with Python's `csv` module and `decimal.Decimal`: no
  code shared with the conversion (crates/tables) and no DuckDB.

Any difference fails: a CSV without its Parquet file (or the reverse), a row
count, a sum that is not exactly equal, a net column that is not
DECIMAL(38,3), a sum DuckDB returns as anything but a `Decimal`. The script
names each one and exits 1; `check_tables(root)` raises `TablesDiffer`.

`download_reports(s3, bucket, prefix, dest)` copies what the pipeline wrote
under a prefix into such a folder (`make demo` calls both at its end).
"""

from __future__ import annotations

import csv
import decimal
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional, TextIO

# The net amount and the category it is grouped by, first match wins: the
# itemized and summary types have `net` and `reporting_category`;
# `balance.summary.1` has `net_amount` and `category` (starting_balance,
# activity, payouts, ending_balance).
NET_COLUMNS = ("net", "net_amount")
CATEGORY_COLUMNS = ("reporting_category", "category")
CURRENCY_COLUMN = "currency"
# What the conversion promises for every amount (crates/tables/src/schema.rs).
AMOUNT_TYPE = "DECIMAL(38,3)"
# A report amount as Stripe writes it: a plain decimal in major units.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")

Group = tuple  # (category or None, currency or None)
# A group one side has and the other has not.
ABSENT = object()
# Differing sums (and missing table files) named per account and report
# type; the rest are counted, and the sums marked in the printed table.
SHOWN_SUMS = 5


class TablesDiffer(Exception):
    """The tables and the CSVs disagree; `problems` names each difference."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} difference(s) between the tables and the CSVs:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def table_name(report_type: str) -> str:
    """The report type with every character outside [a-z0-9] replaced by `_` (SPEC "Tables")."""
    return re.sub(r"[^a-z0-9]", "_", report_type)


@dataclass
class Figures:
    """Row counts and net sums of one (account, report type), from one side."""

    rows: int = 0
    # (date, run id) → rows
    runs: dict = field(default_factory=dict)
    # Which columns were summed, None when the type has no net and category.
    net: Optional[str] = None
    category: Optional[str] = None
    # (category, currency) → exact sum, None when every value was empty (null).
    sums: dict = field(default_factory=dict)
    # Why the sums were not compared (the table's net column is not exact).
    not_summed: Optional[str] = None


def add(sums: dict, group: Group, value: Optional[Decimal]) -> None:
    """SQL's `sum`: a group exists once a row has it; nulls are skipped; all null is null."""
    current = sums.get(group)
    if value is None:
        sums.setdefault(group, None)
    else:
        sums[group] = value if current is None else current + value


def pick(header, names: tuple) -> Optional[str]:
    return next((n for n in names if n in header), None)


# ---------------------------------------------------------------------------
# The CSV side: csv + Decimal, nothing else.
# ---------------------------------------------------------------------------

def csv_files(root: str):
    """(account, report type, date, run id, path) of every report CSV under root."""
    found = []
    for account_dir in sorted(os.listdir(root)):
        if not account_dir.startswith("account="):
            continue
        account_path = os.path.join(root, account_dir)
        if not os.path.isdir(account_path):
            continue
        for type_dir in sorted(os.listdir(account_path)):
            if not type_dir.startswith("report_type=") or not os.path.isdir(os.path.join(account_path, type_dir)):
                continue
            for date_dir in sorted(os.listdir(os.path.join(account_path, type_dir))):
                date_path = os.path.join(account_path, type_dir, date_dir)
                if not date_dir.startswith("date=") or not os.path.isdir(date_path):
                    continue
                for name in sorted(os.listdir(date_path)):
                    if name.endswith(".csv"):
                        found.append((account_dir[len("account="):], type_dir[len("report_type="):],
                                      date_dir[len("date="):], name[:-len(".csv")], os.path.join(date_path, name)))
    return found


def read_header(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, strict=True), [])


def read_csv_figures(path: str, figures: Figures, problems: list[str], run: tuple) -> None:
    """Adds one CSV's rows and net sums to `figures` (whose `net` and
    `category` say which columns to sum; a file without one of them reads
    it as null, as a table of files with different columns does). Exact:
    Decimal with room for 80 digits and Inexact trapped, so no sum is ever
    rounded."""
    with decimal.localcontext() as context:
        context.prec = 80
        context.traps[decimal.Inexact] = True
        # utf-8-sig drops a byte order mark; newline="" lets csv see the CRLFs
        # and the line breaks inside quoted fields as they are.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                problems.append(f"{path}: empty file (no header)")
                return
            index = {name: i for i, name in enumerate(header)}
            net, category, currency = (index.get(figures.net), index.get(figures.category),
                                       index.get(CURRENCY_COLUMN))
            rows = 0
            for row in reader:
                if len(row) != len(header):
                    problems.append(f"{path} line {reader.line_num}: {len(row)} fields for a header of {len(header)}")
                    continue
                rows += 1
                if figures.net is None:
                    continue
                text = "" if net is None else row[net]
                value = None
                if text != "":
                    if not DECIMAL_TEXT.fullmatch(text):
                        problems.append(f"{path} line {reader.line_num}: {figures.net} {text!r} is not a decimal")
                        continue
                    value = Decimal(text)
                group = (None if category is None else row[category] or None,
                         None if currency is None else row[currency] or None)
                add(figures.sums, group, value)
    figures.rows += rows
    figures.runs[run] = rows


def csv_side(root: str, problems: list[str]) -> tuple[dict, list]:
    """(account, report type) → Figures from the CSVs, and the files read."""
    files = csv_files(root)
    # The columns summed for a report type: the first of NET_COLUMNS and of
    # CATEGORY_COLUMNS that any of its files has (its table has them then).
    headers: dict = defaultdict(set)
    for _, report_type, _, _, path in files:
        try:
            headers[report_type].update(read_header(path))
        except (csv.Error, UnicodeDecodeError, OSError):
            pass  # named when the file is read below
    figures: dict = {}
    for account, report_type, date, run_id, path in files:
        one = figures.get((account, report_type))
        if one is None:
            net = pick(headers[report_type], NET_COLUMNS)
            category = pick(headers[report_type], CATEGORY_COLUMNS)
            one = figures[(account, report_type)] = Figures()
            if net is not None and category is not None:
                one.net, one.category = net, category
        try:
            read_csv_figures(path, one, problems, (date, run_id))
        except (csv.Error, UnicodeDecodeError, decimal.DecimalException) as error:
            problems.append(f"{path}: unreadable as a report CSV: {error}")
    return figures, files


# ---------------------------------------------------------------------------
# The SQL side: DuckDB over the Parquet files only.
# ---------------------------------------------------------------------------

def parquet_glob(root: str, table: str) -> str:
    return os.path.join(root, "tables", table, "**", "*.parquet")


def sql_side(root: str, tables: dict, problems: list[str]) -> dict:
    """(account, report type) → Figures from the tables. `tables` maps each
    table name to its report type (and the net and category columns the CSVs
    name, which are safe names already)."""
    import duckdb  # only here: the CSV side must not depend on it

    figures: dict = {}
    con = duckdb.connect()
    for table, (report_type, net, category) in sorted(tables.items()):
        glob = parquet_glob(root, table)
        if not any(name.endswith(".parquet") for _, _, names in os.walk(os.path.join(root, "tables", table))
                   for name in names):
            continue  # no table file at all: each CSV is named as missing its own
        source = "read_parquet(?, hive_partitioning = true, union_by_name = true, filename = true)"
        try:
            described = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}", [glob]).fetchall()}
            counted = con.execute(
                f'SELECT account, CAST("date" AS VARCHAR), filename, count(*) FROM {source} GROUP BY ALL', [glob]
            ).fetchall()
        except duckdb.Error as error:
            problems.append(f"table {table}: DuckDB cannot read {glob}: {str(error).splitlines()[0]}")
            continue
        base = os.path.join(root, "tables", table)
        for account, date, filename, rows in counted:
            one = figures.setdefault((account, report_type), Figures())
            run_id = os.path.basename(filename)[: -len(".parquet")]
            expected = os.path.join(f"account={account}", f"date={date}", f"{run_id}.parquet")
            if os.path.relpath(filename, base) != expected:
                problems.append(f"table {table}: {filename} is not at account=/date=/<run id>.parquet")
            one.rows += rows
            one.runs[(date, run_id)] = rows
        if net is None:
            continue
        missing = [c for c in (net, category, CURRENCY_COLUMN) if c not in described]
        if missing:
            problems.append(f"table {table}: no column {', '.join(missing)} (the CSVs have them)")
            continue
        summed = con.execute(
            f'SELECT account, "{category}", "{CURRENCY_COLUMN}", sum("{net}") FROM {source} GROUP BY ALL', [glob]
        ).fetchall()
        # A float would round: its sums are never compared, and the table fails.
        inexact = [t for *_, t in summed if t is not None and not isinstance(t, Decimal)]
        if described[net] != AMOUNT_TYPE or inexact:
            returned = f"; sum({net}) came back as {type(inexact[0]).__name__} ({inexact[0]!r})" if inexact else ""
            reason = f"{net} is {described[net]}, not {AMOUNT_TYPE}{returned}"
            problems.append(f"table {table}: {reason}: sums not compared")
        else:
            reason = None
        for account, group_category, currency, total in summed:
            one = figures.setdefault((account, report_type), Figures())
            one.net, one.category, one.not_summed = net, category, reason
            if reason is None:
                one.sums[(group_category, currency)] = total
    return figures


# ---------------------------------------------------------------------------
# Comparison and report.
# ---------------------------------------------------------------------------

def compare(root: str, csv_figures: dict, csv_list: list, sql_figures: dict, problems: list[str]) -> None:
    missing: dict = defaultdict(list)
    for account, report_type, date, run_id, path in csv_list:
        parquet = os.path.join("tables", table_name(report_type), f"account={account}", f"date={date}",
                               f"{run_id}.parquet")
        if not os.path.isfile(os.path.join(root, parquet)):
            missing[(account, report_type)].append(f"{account} {report_type} {date} {run_id}: "
                                                   f"CSV without its table file {parquet}")
    for key, lines in sorted(missing.items()):
        problems += lines[:SHOWN_SUMS]
        if len(lines) > SHOWN_SUMS:
            problems.append(f"{key[0]} {key[1]}: and {len(lines) - SHOWN_SUMS} more CSVs without their table files")
    for key in sorted(set(csv_figures) | set(sql_figures)):
        account, report_type = key
        mine, theirs = csv_figures.get(key), sql_figures.get(key)
        if mine is None:
            problems.append(f"{account} {report_type}: table rows with no CSV ({theirs.rows} rows)")
            continue
        if theirs is None:
            problems.append(f"{account} {report_type}: {mine.rows} CSV rows, no table rows")
            continue
        if mine.rows != theirs.rows:
            problems.append(f"{account} {report_type}: {mine.rows} rows in the CSVs, {theirs.rows} in the table")
        for run in sorted(set(mine.runs) | set(theirs.runs)):
            a, b = mine.runs.get(run), theirs.runs.get(run)
            if a is not None and b is None:
                continue  # named above as a CSV without its table file
            if a is None:
                problems.append(f"{account} {report_type} {run[0]} {run[1]}: table file with no CSV ({b} rows)")
            elif a != b:
                problems.append(f"{account} {report_type} {run[0]} {run[1]}: "
                                f"{a} rows in the CSV, {b} in its table file")
        if theirs.not_summed:
            continue  # named once per table by sql_side
        differing = [g for g in sorted(set(mine.sums) | set(theirs.sums), key=sort_key)
                     if not same(mine.sums.get(g, ABSENT), theirs.sums.get(g, ABSENT))]
        for group in differing[:SHOWN_SUMS]:
            problems.append(f"{account} {report_type}: sum of {mine.net or theirs.net} for "
                            f"{mine.category or theirs.category}={group[0]} currency={group[1]}: "
                            f"CSV {show(mine.sums.get(group, ABSENT))}, SQL {show(theirs.sums.get(group, ABSENT))}")
        if len(differing) > SHOWN_SUMS:
            problems.append(f"{account} {report_type}: and {len(differing) - SHOWN_SUMS} more sums differ "
                            f"(marked * above)")


def same(a, b) -> bool:
    """Exactly equal: two Decimals of equal value (1.5 == 1.500), or both null, or both absent."""
    return a == b and type(a) is type(b)


def sort_key(group: Group):
    return tuple("" if part is None else part for part in group)


def show(value) -> str:
    if value is None:
        return "null"
    return "—" if value is ABSENT else str(value)


def report(csv_figures: dict, sql_figures: dict, out: TextIO) -> None:
    keys = sorted(set(csv_figures) | set(sql_figures))
    print("Rows per account and report type (CSV: Python csv; SQL: DuckDB over the Parquet tables)", file=out)
    print(f"  {'account':<24} {'report type':<42} {'CSV files':>9} {'CSV rows':>9} {'SQL rows':>9}", file=out)
    for key in keys:
        mine, theirs = csv_figures.get(key), sql_figures.get(key)
        rows_csv = mine.rows if mine else "—"
        rows_sql = theirs.rows if theirs else "—"
        files = len(mine.runs) if mine else 0
        mark = "" if mine and theirs and mine.rows == theirs.rows else "   ≠"
        print(f"  {key[0]:<24} {key[1]:<42} {files:>9} {rows_csv:>9} {rows_sql:>9}{mark}", file=out)
    for key in keys:
        mine, theirs = csv_figures.get(key) or Figures(), sql_figures.get(key) or Figures()
        net, category = mine.net or theirs.net, mine.category or theirs.category
        if net is None:
            continue
        groups = set(mine.sums) | set(theirs.sums)
        currencies = sorted({g[1] for g in groups}, key=lambda c: c or "")
        categories = sorted({g[0] for g in groups}, key=lambda c: c or "")
        print(f"\nSum of {net} by {category} and currency — {key[0]}, {key[1]} "
              f"(the SQL figure; * where the CSVs say otherwise)", file=out)
        if theirs.not_summed:
            print(f"  not compared: {theirs.not_summed}", file=out)
            continue
        if key not in sql_figures:
            print("  no table rows: nothing to compare", file=out)
            continue
        print(f"  {category:<34}" + "".join(f"{show(c):>17}" for c in currencies), file=out)
        for cat in categories:
            cells = []
            for cur in currencies:
                a, b = mine.sums.get((cat, cur), ABSENT), theirs.sums.get((cat, cur), ABSENT)
                cells.append(f"{show(b) + ('' if same(a, b) else ' *'):>17}")
            print(f"  {show(cat):<34}" + "".join(cells), file=out)


def check_tables(root: str, out: TextIO = sys.stdout) -> None:
    """Prints the figures of `root` from both sides and raises `TablesDiffer`
    naming every difference (also when `root` holds no report CSV)."""
    if not os.path.isdir(root):
        raise TablesDiffer([f"{root} is not a folder"])
    problems: list[str] = []
    csv_figures, csv_list = csv_side(root, problems)
    if not csv_list:
        problems.append(f"no report CSV under {root} (account=…/report_type=…/date=…/<run>.csv)")
    tables: dict = {}
    for (account, report_type), figures in csv_figures.items():
        table = table_name(report_type)
        known = tables.setdefault(table, (report_type, figures.net, figures.category))
        if known[0] != report_type:
            problems.append(f"report types {known[0]} and {report_type} share table {table}: cannot compare")
    # Tables that no CSV names are read too: their rows would be extra rows.
    tables_dir = os.path.join(root, "tables")
    if os.path.isdir(tables_dir):
        for table in sorted(os.listdir(tables_dir)):
            tables.setdefault(table, (f"(table {table})", None, None))
    sql_figures = sql_side(root, tables, problems)
    compare(root, csv_figures, csv_list, sql_figures, problems)
    report(csv_figures, sql_figures, out)
    if problems:
        raise TablesDiffer(problems)


def download_reports(s3_client, bucket: str, prefix: str, dest: str) -> list[str]:
    """Copies every object under `prefix` in `bucket` to `dest`, at the same
    key relative to the prefix (`<prefix>account=…/….csv` → `<dest>/account=…/….csv`,
    `<prefix>tables/…` → `<dest>/tables/…`). `dest` must be empty or absent:
    a file left from another run would be checked as if the pipeline had
    written it. Returns the keys copied."""
    if os.path.isdir(dest) and os.listdir(dest):
        raise ValueError(f"{dest} is not empty")
    copied = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            parts = key[len(prefix):].split("/")
            if key.endswith("/"):
                continue  # a folder marker, not a file
            if any(part in ("", ".", "..") for part in parts):
                raise ValueError(f"s3://{bucket}/{key}: not a relative path under {prefix!r}")
            path = os.path.join(dest, *parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3_client.download_file(bucket, key, path)
            copied.append(key)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: python scripts/demo_sql.py <folder>  (see the top of this file)", file=sys.stderr)
        return 2
    try:
        check_tables(argv[1])
    except TablesDiffer as differ:
        print(f"\nFAIL: {differ}")
        return 1
    print("\nPASS: every row count and every sum of the tables equals the CSVs' exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
