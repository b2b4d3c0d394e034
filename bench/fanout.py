"""4. Fan-out: report runs created at Stripe's rate limits, and what the
scheduler's Lambda memory size costs for it."""
import json
import os
import subprocess
import tempfile
import time
import urllib.request

from common import (EMULATOR, LAMBDA_ARM64_PRICE_PER_GB_SECOND, LAMBDA_MEMORY_SIZES_MB, MB_PER_VCPU, RELEASE,
                    cpu_share, cpu_share_available, emulator, goal_cell, log, stripe_api, template_function)
import local_aws  # noqa: E402,I100 - on the path common sets

NAME = "fanout"
TITLE = "Fan-out"
NEEDS_AWS = True

# (id, API key, webhook secret): an account's key's mode sets its limits.
TEST_ACCOUNT = ("acct_1BenchFanoutT000", "sk_test_bench_fanout_t", "whsec_bench_t")
LIVE_ACCOUNT = ("acct_1BenchFanoutL000", "sk_live_bench_fanout_l", "whsec_bench_l")
OTHER_ACCOUNT = ("acct_1BenchFanoutB000", "sk_test_bench_fanout_b", "whsec_bench_b")
# Stripe's limits (docs.stripe.com/rate-limits), as the emulator answers
# them: per account 25 requests/s in test mode and 100 in live mode, and 25/s
# to each endpoint in either; and an account whose endpoint limit Stripe
# raised (on request), to show the scheduler keeps up at live mode's pace.
STRIPE_LIMITS = {"rate_limit_rps": 25, "live_rate_limit_rps": 100, "endpoint_rate_limit_rps": 25}
RAISED_LIMITS = {"rate_limit_rps": 25, "live_rate_limit_rps": 100}
# The scheduler's default share of Stripe's limits (RATE_SHARE in
# crates/stripe-reports/src/domain/config.rs).
SHARE = 0.9
GOAL = 1.1


def fanout_types(count, prefix="fanout"):
    today = int(time.time()) // 86400 * 86400
    return [{"id": f"{prefix}.type_{i:02}.1", "file_size": 1024, "data_available_start": today - 365 * 86400,
             "data_available_end": today} for i in range(count)]


def set_faults(faults):
    request = urllib.request.Request(f"{EMULATOR}/_emulator/faults", data=json.dumps(faults).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def fresh_table(aws_env):
    env = dict(aws_env, RUNS_TABLE=f"bench-fanout-{time.time_ns()}")
    local_aws.create_resources(env)  # a fresh ledger table; the bucket and queues exist
    return env["RUNS_TABLE"]


def scheduler_env(aws_env, table, types, days, accounts, extra=None, listed=False):
    """The scheduler's environment for `types` × `days` of `accounts`
    ((id, key, secret)): in STRIPE_ACCOUNTS, or one account's key alone as
    STRIPE_API_KEY unless `listed`."""
    env = dict(aws_env, RUNS_TABLE=table, STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
               REPORTS=json.dumps([{"report_type": t["id"]} for t in types]), LOOKBACK_DAYS=str(days),
               # Warnings, and the `account` span (info) that names the account
               # on each of them (with its own info lines: one per run created).
               RUST_LOG="warn,[account]=info")
    env.pop("STRIPE_MAX_RPS", None)
    env.pop("STRIPE_MAX_RPS_PER_ENDPOINT", None)
    if len(accounts) == 1 and not listed:
        env["STRIPE_API_KEY"] = accounts[0][1]
    else:
        env["STRIPE_ACCOUNTS"] = json.dumps([{"account": acct, "api_key": key, "webhook_secret": secret}
                                             for acct, key, secret in accounts])
    env.update(extra or {})
    return env


def start(env, preexec_fn=None):
    """`stripe-reports invoke scheduler` (release) with `env`, under GNU time
    for its peak RSS (see `peak_rss_and_cpu` in common.py); `preexec_fn`
    (common's `cpu_share`) puts both in a CPU quota from their first instruction."""
    rss_file = tempfile.NamedTemporaryFile("r", suffix=".rss")
    argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, os.path.join(RELEASE, "stripe-reports"), "invoke",
            "scheduler"]
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    child = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, preexec_fn=preexec_fn)
    return child, stdout, stderr, rss_file, time.perf_counter()


def finish(started):
    """Waits for a child of `start`: its wall seconds, CPU seconds (user +
    sys of the scheduler, reaped by GNU time, and of GNU time), peak RSS MiB
    of the scheduler, its summary (the answer's last line) and its log."""
    child, stdout, stderr, rss_file, at = started
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - at
    child.returncode = os.waitstatus_to_exitcode(status)
    stdout.seek(0)
    stderr.seek(0)
    out, log_text = stdout.read().decode(), stderr.read().decode()
    if child.returncode == 0:
        summary = json.loads(out.strip().splitlines()[-1])
    else:
        # An invocation with failed requests ends with an error naming them
        # and its summary ("…: {…}"): counted in the table, not fatal to it.
        failed = [line for line in log_text.splitlines() if "request(s) failed" in line and ': {"' in line]
        if not failed:
            raise RuntimeError(f"the scheduler failed: {log_text[-800:]}")
        summary = json.loads(failed[-1][failed[-1].index(': {"') + 2:])
    with rss_file:
        rss = int(rss_file.read().split()[-1]) / 1024
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss": rss, "summary": summary,
            "log": log_text}


def retried_429(log_text, account=None):
    """429s the scheduler logged retrying (in `account`'s span when given)."""
    return sum(1 for line in log_text.splitlines()
               if "answered 429" in line and (account is None or f"account={account}" in line))


def invocations(aws_env, served, faults, runs, preexec_fn=None, listed=False):
    """Against a fresh emulator serving `served` accounts ((id, key, secret))
    with `faults`, runs the scheduler invocations `runs` (each (types, days,
    accounts, extra env, table key)) at once, each table key naming its own
    fresh ledger table; answers each one's result and the emulator's stats.
    Runs stay pending for the whole invocation: this measures creating them."""
    every_type = [t for types, *_ in runs for t in types]
    unique = list({t["id"]: t for t in every_type}.values())
    with emulator(unique, run_delay_ms=600_000, accounts=served):
        set_faults(faults)
        tables = {key: fresh_table(aws_env) for *_, key in runs}
        started = [start(scheduler_env(aws_env, tables[key], types, days, accounts, extra, listed), preexec_fn)
                   for types, days, accounts, extra, key in runs]
        results = [finish(one) for one in started]
        stats = stripe_api("GET", "/_emulator/stats")
        records = stripe_api("GET", "/_emulator/requests")
        for result in results:
            result["per_account"] = {
                acct: {"api_requests": sum(1 for r in records if r["account"] == acct),
                       "runs_at_stripe": len(stripe_api("GET", f"/_emulator/runs?account={acct}"))}
                for acct, _, _ in served}
    return results, stats


def one_account_row(label, limits_label, result, stats, pace):
    summary = result["summary"]
    floor = summary["planned"] / pace
    ratio = result["seconds"] / floor
    holds = ratio <= GOAL and summary["errors"] == 0 and stats["rate_limited"] == 0 \
        and stats["runs_created"] == summary["planned"]
    return (f"| {label} | {limits_label} | {pace:g}/s | {summary['planned']} | {summary['created']} "
            f"| {floor:.1f} s | {result['seconds']:.1f} s | {ratio:.2f} | {goal_cell(holds)} "
            f"| {stats['api_requests']} | {stats['rate_limited']} | {summary['errors']} | {stats['runs_created']} "
            f"| {result['cpu']:.2f} | {result['rss']:.0f} |")


def bench_modes(aws_env):
    """1,000 runs of one account: test-mode key, live-mode key, and a
    live-mode key whose per-endpoint limit Stripe raised."""
    types = fanout_types(50)
    rows = []
    measured = {}
    cases = [
        ("test-mode key, defaults", TEST_ACCOUNT, STRIPE_LIMITS, "25/s, 25/s per endpoint", {}, 25 * SHARE),
        ("live-mode key, defaults", LIVE_ACCOUNT, STRIPE_LIMITS, "100/s, 25/s per endpoint", {}, 25 * SHARE),
        ("live-mode key, `STRIPE_MAX_RPS_PER_ENDPOINT=100`", LIVE_ACCOUNT, RAISED_LIMITS,
         "100/s, endpoints raised", {"STRIPE_MAX_RPS_PER_ENDPOINT": "100"}, 100 * SHARE),
    ]
    for label, account, faults, limits_label, extra, pace in cases:
        log(f"fan-out: 1,000 runs, {label}")
        (result,), stats = invocations(aws_env, [account], faults, [(types, 20, [account], extra, "one")])
        measured[label] = (result, pace)
        rows.append(one_account_row(label, limits_label, result, stats, pace))
    table = [
        "| key's mode, settings | Stripe's limits (emulator) | scheduler's pace | runs planned | created "
        f"| floor: runs ÷ pace | seconds | ratio to the floor | ≤ {GOAL}×, 0 errors, 0 answered 429 "
        "| API requests | answered 429 | errors | runs at Stripe | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    return table, measured


def bench_concurrent(aws_env):
    """Two invocations working one account at once, 500 runs each (their
    own specs): sharing the account's pace through one ledger table, then,
    as the baseline, each pacing itself alone (two tables)."""
    first, second = fanout_types(25, "first"), fanout_types(25, "second")
    pace = 25 * SHARE
    rows = []
    for label, keys in (("one ledger table: the shared pace", ("shared", "shared")),
                        ("two ledger tables: each invocation paces itself (baseline)", ("a", "b"))):
        log(f"fan-out: two invocations at once, {label}")
        results, stats = invocations(aws_env, [TEST_ACCOUNT], STRIPE_LIMITS,
                                     [(first, 20, [TEST_ACCOUNT], {}, keys[0]),
                                      (second, 20, [TEST_ACCOUNT], {}, keys[1])])
        planned = sum(r["summary"]["planned"] for r in results)
        created = sum(r["summary"]["created"] for r in results)
        errors = sum(r["summary"]["errors"] for r in results)
        seconds = max(r["seconds"] for r in results)
        floor = planned / pace
        shared = keys[0] == keys[1]
        holds = seconds / floor <= GOAL and errors == 0 and stats["rate_limited"] == 0 \
            and stats["runs_created"] == planned
        goal = goal_cell(holds) if shared else f"{goal_cell(holds)} (baseline)"
        rows.append(f"| {label} | {planned} | {created} | {floor:.1f} s | {seconds:.1f} s | {seconds / floor:.2f} "
                    f"| {goal} | {stats['api_requests']} | {stats['rate_limited']} "
                    f"| {sum(retried_429(r['log']) for r in results)} | {errors} | {stats['runs_created']} |")
    return [
        "| two invocations at once, one test-mode account, 500 runs each | runs planned | created "
        f"| floor: runs ÷ {pace:g}/s | seconds (the later) | ratio to the floor | ≤ {GOAL}×, 0 errors, 0 answered 429 "
        "| API requests | answered 429 | 429s retried | errors | runs at Stripe |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def bench_accounts(aws_env):
    """One invocation over one test-mode account (500 runs), then over two
    (500 each): each account at its own pace, both at once."""
    types = fanout_types(25)
    pace = 25 * SHARE
    results = {}
    for label, accounts in (("1 × 500", [TEST_ACCOUNT]), ("2 × 500", [TEST_ACCOUNT, OTHER_ACCOUNT])):
        log(f"fan-out: accounts {label}")
        (result,), stats = invocations(aws_env, accounts, STRIPE_LIMITS, [(types, 20, accounts, {}, "one")],
                                       listed=True)
        results[label] = (result, stats, accounts)
    single = results["1 × 500"][0]["seconds"]
    rows = []
    for label, (result, stats, accounts) in results.items():
        parts = {part["account"]: part for part in result["summary"]["accounts"]}

        def per(field, parts=parts, accounts=accounts):
            return ", ".join(str(parts[a][field]) for a, _, _ in accounts)

        requests = ", ".join(str(result["per_account"][a]["api_requests"]) for a, _, _ in accounts)
        at_stripe = ", ".join(str(result["per_account"][a]["runs_at_stripe"]) for a, _, _ in accounts)
        retried = ", ".join(str(retried_429(result["log"], a)) for a, _, _ in accounts)
        floor = 500 / pace
        ratio = result["seconds"] / floor
        holds = ratio <= GOAL and result["summary"]["errors"] == 0 and stats["rate_limited"] == 0 \
            and stats["runs_created"] == result["summary"]["planned"]
        rows.append(f"| {label} | {result['summary']['planned']} | {per('created')} | {floor:.1f} s "
                    f"| {result['seconds']:.1f} s | {ratio:.2f} | {result['seconds'] / single:.2f} | {goal_cell(holds)} "
                    f"| {stats['api_requests']} ({requests}) | {stats['rate_limited']} ({retried}) "
                    f"| {result['summary']['errors']} ({per('errors')}) | {stats['runs_created']} ({at_stripe}) |")
    return [
        "| accounts × runs, one invocation | runs planned | created (per account) "
        f"| floor: 500 ÷ {pace:g}/s per account | seconds | ratio to the floor | ratio to 1 account "
        f"| ≤ {GOAL}×, 0 errors, 0 answered 429 | API requests (per account) | answered 429 (429s retried per account) "
        "| errors (per account) | runs at Stripe (per account) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def quota_run(aws_env, size_mb, account, faults, extra):
    """The 1,000-run invocation in a cgroup v1 CPU quota of `size_mb`'s share."""
    with cpu_share(size_mb) as enter:
        (result,), stats = invocations(aws_env, [account], faults,
                                       [(fanout_types(50), 20, [account], extra, "one")], preexec_fn=enter)
    return result, stats


def bench_cost(aws_env, measured):
    """Per Lambda size: the CPU share, the 1,000-run invocation's time
    derived from its CPU seconds (the fan-out waits for its pace, so it
    takes the longer of its measured time and its CPU seconds ÷ the share),
    measured in a cgroup CPU quota of that share where one is available, and
    GB-seconds and dollars per 1,000 runs."""
    can_quota = cpu_share_available()
    rows = []
    for label, extra, faults, account in (
            ("test-mode key, defaults", {}, STRIPE_LIMITS, TEST_ACCOUNT),
            ("live-mode key, `STRIPE_MAX_RPS_PER_ENDPOINT=100`", {"STRIPE_MAX_RPS_PER_ENDPOINT": "100"},
             RAISED_LIMITS, LIVE_ACCOUNT)):
        result, pace = measured[label]
        floor = result["summary"]["planned"] / pace
        for size in LAMBDA_MEMORY_SIZES_MB:
            share = size / MB_PER_VCPU
            derived = max(result["seconds"], result["cpu"] / share)
            quota = ""
            holds_seconds = derived
            if can_quota and size <= 256:
                log(f"fan-out: {label} in the CPU quota of {size} MB")
                run, stats = quota_run(aws_env, size, account, faults, extra)
                quota = (f"{run['seconds']:.1f} s ({run['seconds'] / floor:.2f}×, "
                         f"{stats['rate_limited']} answered 429, {run['summary']['errors']} errors)")
                holds_seconds = run["seconds"]
            gb_seconds = size / 1024 * holds_seconds
            holds = holds_seconds / floor <= GOAL
            rows.append(f"| {label} | {size} | {share:.3f} | {result['cpu']:.2f} | {floor:.1f} s | {derived:.1f} s "
                        f"| {quota or '—'} | {holds_seconds / floor:.2f} | {goal_cell(holds)} | {gb_seconds:.1f} "
                        f"| {gb_seconds * LAMBDA_ARM64_PRICE_PER_GB_SECOND:.6f} |")
    return [
        "| 1,000 runs | Lambda MB | vCPU share | CPU s (measured, 1 vCPU) | floor | seconds derived: max(measured, "
        f"CPU s ÷ share) | seconds measured in a CPU quota of the share | ratio to the floor | ≤ {GOAL}× "
        "| GB-s per 1,000 runs | $ per 1,000 runs (arm64) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        scheduler_choice(measured),
    ]


def scheduler_choice(measured):
    """The cost table's closing paragraph: how many accounts one invocation
    keeps at the default pace at each size, and the size chosen."""
    result, pace = measured["test-mode key, defaults"]
    # vCPU one account's fan-out needs at the default pace: its CPU seconds
    # per run (the process's start included) × runs per second.
    per_account = result["cpu"] / result["summary"]["planned"] * pace
    kept = ", ".join(f"{size:,} MB {size / MB_PER_VCPU / per_account:.1f}" for size in LAMBDA_MEMORY_SIZES_MB)
    return (f"Choice: one account's fan-out at the default {pace:g}/s takes {per_account:.3f} vCPU "
            f"({result['cpu'] / result['summary']['planned'] * 1000:.1f} ms of CPU per run), and accounts are "
            f"worked at once, so a size keeps the pace for share ÷ that many accounts: {kept}. The template's "
            f"scheduler has {template_function('SchedulerFunction')[0]:,} MB; 512 MB keeps five accounts at full pace (a first deploy or a backfill "
            "of each at once), or one account whose limits Stripe raised at 90/s (the table: within 1.1× from "
            "512 MB); 128 MB would keep one account at the default pace at half the GB-seconds, but a fan-out "
            "is rare (the hourly invocation sends a few requests per account), so the cost is cents a year "
            "either way and the pace is what a user waits for.")


def measure(aws_env):
    modes, measured = bench_modes(aws_env)
    concurrent = bench_concurrent(aws_env)
    accounts = bench_accounts(aws_env)
    cost = bench_cost(aws_env, measured)
    return modes + [""] + concurrent + [""] + accounts + [""] + cost + ["", NOTE]


NOTE = (
    "Each row: `stripe-reports invoke scheduler` (release; the scheduler's handler, ledger in moto) against a "
    "fresh emulator limiting each account as Stripe documents (docs.stripe.com/rate-limits: 25 requests/s in "
    "test mode, 100 in live mode, and 25/s to each endpoint, such as creating report runs, in either mode; "
    "counted over any one second), with a fresh ledger table; runs stay pending, so this measures creating "
    "them. The scheduler's pace is 90 % of the limit that binds a fan-out: the per-endpoint one, since 1,000 of "
    "its 1,051 requests create runs, so the live-mode default is 22.5/s like test mode's; the third row is an "
    "account whose endpoint limit Stripe raised (`STRIPE_MAX_RPS_PER_ENDPOINT=100`, the pace then 90 % of live "
    "mode's 100/s), which shows the per-run work (a ledger read, the create, two ledger writes, and the shared "
    "pace's one write) keeps up at 90/s. Floor: runs ÷ pace (the 51 reads of the run list and report types "
    "are in the measured time). Two invocations: each plans its own 25 specs × 20 days of the same account at "
    "once; with one ledger table they take their request slots from the account's one sequence "
    "(`pace#<account>`), with two tables each paces itself (what concurrent invocations did before), and "
    "Stripe's 429s are retried with backoff. Accounts: one invocation over `STRIPE_ACCOUNTS` of one, then two "
    "test-mode accounts, 25 specs × 20 days each; per account from the emulator's request log and the "
    "scheduler's summary. Cost: CPU seconds are user + sys of the invocation's process (its whole life: "
    "configuration, clients, the account check, the fan-out); Lambda gives a function memory ÷ 1,769 MB of a "
    "vCPU, so the derived time is the longer of the measured time and CPU seconds ÷ share, and the smaller "
    "sizes are also measured in a cgroup v1 CPU quota of their share (`cpu.cfs_quota_us` per 100 ms); billed "
    "GB-seconds = MB ÷ 1,024 × seconds, at arm64's $0.0000133334 per GB-second. Over TLS in AWS each request "
    "also costs its encryption (small beside the HTTP and JSON work; connections are reused)."
)
