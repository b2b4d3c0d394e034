"""4. Fan-out: report runs created against Stripe's rate limit."""
import json
import os
import subprocess
import time
import urllib.request

from common import EMULATOR, KEY, RELEASE, emulator, log, stripe_api
import local_aws  # noqa: E402,I100 - on the path common sets

NAME = "fanout"
TITLE = "Fan-out"
NEEDS_AWS = True
# The accounts of the fan-out's accounts part: (id, API key, webhook secret).
FANOUT_ACCOUNTS = [("acct_1BenchFanoutA000", "sk_test_bench_a", "whsec_bench_a"),
                   ("acct_1BenchFanoutB000", "sk_test_bench_b", "whsec_bench_b")]


def fanout_types(count):
    today = int(time.time()) // 86400 * 86400
    return [{"id": f"fanout.type_{i:02}.1", "file_size": 1024, "data_available_start": today - 365 * 86400,
             "data_available_end": today} for i in range(count)]


def fanout_invocation(aws_env, types, days, accounts=None):
    """One `stripe-reports invoke scheduler` (release) planning `types` ×
    `days` for KEY's account, or for each of `accounts` ((id, key, secret),
    through STRIPE_ACCOUNTS), against a fresh emulator whose every account
    is limited to 25 requests/s, and a fresh ledger table. Runs stay pending
    for the whole invocation: this measures creating them."""
    with emulator(types, run_delay_ms=600_000, accounts=accounts):
        request = urllib.request.Request(f"{EMULATOR}/_emulator/faults", data=b'{"rate_limit_rps": 25}', method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        env = dict(aws_env, RUNS_TABLE=f"bench-fanout-{time.time_ns()}")
        local_aws.create_resources(env)  # a fresh ledger table; the queues exist
        env.update(STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
                   REPORTS=json.dumps([{"report_type": t["id"]} for t in types]), LOOKBACK_DAYS=str(days),
                   RUST_LOG="warn")
        if accounts:
            env["STRIPE_ACCOUNTS"] = json.dumps([{"account": acct, "api_key": key, "webhook_secret": secret}
                                                 for acct, key, secret in accounts])
            # Warnings, and the `account` span (info) that names the account
            # on each of them (with its own info lines: one per run created).
            env["RUST_LOG"] = "warn,[account]=info"
        else:
            env["STRIPE_API_KEY"] = KEY
        started = time.perf_counter()
        result = subprocess.run([os.path.join(RELEASE, "stripe-reports"), "invoke", "scheduler"], env=env,
                                capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"the scheduler failed: {result.stderr[-500:]}")
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        stats = stripe_api("GET", "/_emulator/stats")
        per_account = {}
        if accounts:
            records = stripe_api("GET", "/_emulator/requests")
            parts = {part["account"]: part for part in summary["accounts"]}
            for acct, _, _ in accounts:
                per_account[acct] = {
                    "api_requests": sum(1 for r in records if r["account"] == acct),
                    "runs_at_stripe": len(stripe_api("GET", f"/_emulator/runs?account={acct}")),
                    "planned": parts[acct]["planned"], "created": parts[acct]["created"],
                    "errors": parts[acct]["errors"],
                    # The emulator counts 429s over all accounts; the scheduler
                    # logs each 429 it retries inside its account's span
                    # ("account{account=acct_…}: … answered 429").
                    "retried_429": sum(1 for line in result.stderr.splitlines()
                                       if f"account={acct}" in line and "answered 429" in line),
                }
    return {"seconds": seconds, "summary": summary, "stats": stats, "accounts": per_account}


def bench_fanout(aws_env):
    """The release `stripe-reports invoke scheduler` (the scheduler's handler)
    planning 50 specs × 20 days against the emulator's 25 requests/s limit;
    then 25 specs × 20 days for one account, and for two accounts at once."""
    log("fan-out: 1,000 runs")
    one = fanout_invocation(aws_env, fanout_types(50), 20)
    summary, stats, seconds = one["summary"], one["stats"], one["seconds"]
    table = [
        "| runs planned | created | seconds | floor at 25 requests/s | ratio to the floor "
        "| at the scheduler's 20/s default: floor, ratio | API requests | answered 429 | errors | runs at Stripe |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {summary['planned']} | {summary['created']} | {seconds:.1f} | 40 s | {seconds / 40:.2f} "
        f"| 50 s, {seconds / 50:.2f} | {stats['api_requests']} | {stats['rate_limited']} | {summary['errors']} "
        f"| {stats['runs_created']} |",
    ]

    types = fanout_types(25)
    log("fan-out: 1 account × 500 runs")
    single = fanout_invocation(aws_env, types, 20, accounts=FANOUT_ACCOUNTS[:1])
    log("fan-out: 2 accounts × 500 runs")
    double = fanout_invocation(aws_env, types, 20, accounts=FANOUT_ACCOUNTS)
    ratio = double["seconds"] / single["seconds"]

    def per(result, field):
        return ", ".join(f"{part[field]}" for part in result["accounts"].values())

    table += [
        "",
        "| accounts × runs | runs planned | created | seconds | floor at the scheduler's 20/s per account "
        "| ratio to 1 account | API requests (per account) | answered 429 (per account) | errors (per account) "
        "| runs at Stripe (per account) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, result in (("1 × 500", single), ("2 × 500", double)):
        summary, stats = result["summary"], result["stats"]
        table.append(
            f"| {label} | {summary['planned']} | {summary['created']} | {result['seconds']:.1f} | 25 s "
            f"| {result['seconds'] / single['seconds']:.2f} | {stats['api_requests']} ({per(result, 'api_requests')}) "
            f"| {stats['rate_limited']} ({per(result, 'retried_429')}) | {summary['errors']} ({per(result, 'errors')}) "
            f"| {stats['runs_created']} ({per(result, 'runs_at_stripe')}) |")
    table += ["", f"Two accounts × 500 runs took {double['seconds']:.1f} s, {ratio:.2f}× the {single['seconds']:.1f} s "
                  f"of one account × 500 (the goal: about 1, each account having its own 25/s at Stripe and its "
                  f"own 20/s limiter in the scheduler, worked at the same time); 1,000 runs of one account "
                  f"take {seconds:.1f} s."]
    return table


def measure(aws_env):
    return bench_fanout(aws_env) + ["", NOTE]


NOTE = "One scheduled invocation of the release scheduler handler (`stripe-reports invoke scheduler`, ledger in moto) against the emulator's 25 requests/s limit; the API requests include reconcile's listing. The scheduler's own limit is its default, 20/s (headroom under Stripe's test-mode 25/s), so 50 s is its floor. Accounts: the same invocation with `STRIPE_ACCOUNTS` naming one account, then two, each account 25 specs × 20 days, the emulator limiting each account's key to 25 requests/s (`--accounts`, `rate_limit_rps`), each with a fresh emulator and ledger table (`RUST_LOG=warn,[account]=info` for both). Per account: API requests from the emulator's request log by key, 429s the retries the scheduler logged in that account's span (the emulator counts 429s over all accounts), errors and created from the invocation's per-account summary, runs from the emulator's runs of that account."
