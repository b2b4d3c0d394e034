"""1. Downloader: the release downloader against curl and the AWS CLI."""
import json
import os

from common import AWS_CLI, EMULATOR, KEY, MIB, RELEASE, ROOT, emulator, finished_run, log, run, timed

NAME = "downloader"
TITLE = "Downloader"
NEEDS_AWS = True


def bench_downloader(aws_env):
    sizes = [("10 MiB", "bench.10mib.1", 10 * MIB), ("100 MiB", "bench.100mib.1", 100 * MIB),
             ("1 GiB", "bench.1gib.1", 1024 * MIB)]
    types = [{"id": t, "file_size": n, "data_available_start": 1700000000, "data_available_end": 1800000000}
             for _, t, n in sizes]
    rows = []
    with emulator(types, run_delay_ms=10):
        env = dict(aws_env, STRIPE_API_KEY=KEY, STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
                   REPORTS_PREFIX="bench/", RUST_LOG="warn")
        cli_env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_DEFAULT_REGION="us-east-1")
        for label, report_type, size in sizes:
            log(f"downloader: {label}")
            run_id, url, _ = finished_run(report_type)
            curl_bps = float(run(["curl", "-sf", "-u", KEY + ":", "-o", "/dev/null", "-w", "%{speed_download}", url]))
            ours = json.loads(run([os.path.join(RELEASE, "examples", "download_one"), run_id], env=env)
                              .strip().splitlines()[-1])
            rss_file = os.path.join(ROOT, ".local", "bench-awscli-rss")
            key = f"s3://{aws_env['REPORTS_BUCKET']}/awscli/{report_type}.csv"
            seconds = timed(["bash", "-o", "pipefail", "-c",
                             f"curl -sf -u {KEY}: '{url}' | /usr/bin/time -f %M -o {rss_file} "
                             f"{AWS_CLI} s3 cp - {key} --endpoint-url {aws_env['AWS_ENDPOINT_URL']} "
                             f"--expected-size {size} --only-show-errors"], env=cli_env)
            cli_rss = int(open(rss_file).read().split()[-1]) / 1024
            curl = curl_bps / MIB
            cli = size / MIB / seconds
            rows.append((label, ours["mib_per_s"], ours["peak_rss_mib"], curl, cli, cli_rss))
    table = ["| size | ours MiB/s | ours peak RSS MiB | curl → /dev/null MiB/s | AWS CLI (`curl \\| aws s3 cp -`) MiB/s "
             "| AWS CLI peak RSS MiB | ours / curl | ours / AWS CLI |", "|---|---|---|---|---|---|---|---|"]
    for label, ours, rss, curl, cli, cli_rss in rows:
        table.append(f"| {label} | {ours:.1f} | {rss:.1f} | {curl:.1f} | {cli:.1f} | {cli_rss:.1f} "
                     f"| {ours / curl:.2f} | {ours / cli:.2f} |")
    return table


def measure(aws_env):
    return bench_downloader(aws_env) + ["", NOTE]


NOTE = "Each size measured once, into moto's S3 server (Python) on loopback, which bounds every uploader here: the curl column is the emulator's generation rate, not an S3 speed. Ours: the release downloader (`download_one`, the Lambda's configuration: 8 MiB parts, 2 in flight) with SHA-256 and size checks; peak RSS is the process's VmHWM. AWS CLI: default settings (8 MiB parts, 10 concurrent requests); its RSS excludes curl."
