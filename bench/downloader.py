"""1. Downloader: CPU-seconds per GiB stored against the floor on the same
bytes, MiB/s and peak RSS against curl and the AWS CLI, into a fast local S3
(s3s-fs on a RAM-backed folder) and into moto's; then the cost table, the
downloader under the CPU share of each Lambda memory size."""
import contextlib
import json
import os
import socket
import statistics
import tempfile
import threading

from common import (AWS_CLI, EMULATOR, KEY, LAMBDA_ARM64_PRICE_PER_GB_SECOND, LAMBDA_MEMORY_SIZES_MB, MB_PER_VCPU, MIB,
                    RELEASE, ROOT, cpu_seconds_of, cpu_share, cpu_share_available, emulator, finished_run, goal_cell,
                    log, peak_rss_and_cpu, server, template_function)

NAME = "downloader"
TITLE = "Downloader"
NEEDS_AWS = True

# `make bench-tools` installs it (cargo install s3s-fs, a Rust S3 server over a folder).
S3S_FS = os.path.join(ROOT, ".local", "s3s-fs", "bin", "s3s-fs")
S3S_PORT = int(os.environ.get("BENCH_S3S_PORT", "12198"))
DOWNLOAD_ONE = os.path.join(RELEASE, "examples", "download_one")
SIZES = [("10 MiB", "bench.10mib.1", 10 * MIB), ("100 MiB", "bench.100mib.1", 100 * MIB),
         ("1 GiB", "bench.1gib.1", 1024 * MIB)]
# The downloader's memory goal: flat, at most this, whatever the file size.
RSS_GOAL_MIB = 32
GIB = 1024 * MIB
# What each process costs per file, whatever its size (start-up, the secret,
# the ledger's reads and writes, the multipart upload's create and complete):
# measured on the smallest file that is a multipart upload, one full part and
# 1 KiB, so that every size's per-GiB figure is the cost of its bytes beyond
# it, the same requests made on both sides of the subtraction.
PER_FILE = "bench.per-file.1"
PER_FILE_SIZE = 5 * MIB + 1024
# Small files cost a few milliseconds of CPU, as noisy as the figure: each is
# measured this many times and the median kept.
REPEATS = {"10 MiB": 5, "100 MiB": 3, "1 GiB": 1}
# A warm function has stored files before: this one (four parts and a short
# fifth, so every part buffer the pool will hold has been filled once) is
# stored first, in the same process, before the file measured warm.
WARM_UP = "bench.warm-up.1"
WARM_UP_SIZE = 20 * MIB + 1024
WARM_SIZES = [("5 MiB + 1 KiB", PER_FILE, PER_FILE_SIZE), ("10 MiB", "bench.10mib.1", 10 * MIB),
              ("100 MiB", "bench.100mib.1", 100 * MIB)]
WARM_REPEATS = 9


@contextlib.contextmanager
def s3s_fs(bucket):
    """s3s-fs serving a RAM-backed folder (/dev/shm when there is one) with
    `bucket` in it, until the block ends; yields the process."""
    if not os.path.exists(S3S_FS):
        raise RuntimeError(f"{S3S_FS} missing: run `make bench-tools`")
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bench-s3s-", dir=parent) as root:
        os.makedirs(os.path.join(root, bucket))
        with server([S3S_FS, "--host", "127.0.0.1", "--port", str(S3S_PORT), "--access-key", "testing",
                     "--secret-key", "testing", root], S3S_PORT) as process:
            yield process


@contextlib.contextmanager
def discard_sink():
    """A TCP server that reads and drops everything: where the floor sends
    its parts (its CPU is this process's, not the measured one's)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                buffer = bytearray(1 << 20)
                while connection.recv_into(buffer):
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def measured_with_servers(argv, env, servers, preexec_fn=None):
    """`peak_rss_and_cpu` of argv, and the CPU seconds each of `servers`
    ({name: process}) spent meanwhile."""
    before = {name: cpu_seconds_of(process.pid) for name, process in servers.items()}
    wall, cpu, rss, stdout = peak_rss_and_cpu(argv, env=env, preexec_fn=preexec_fn)
    spent = {name: cpu_seconds_of(process.pid) - before[name] for name, process in servers.items()}
    return wall, cpu, rss, stdout, spent


def median_by_cpu(samples, cpu=lambda sample: sample[1]):
    """The samples with the median, the lowest and the highest CPU seconds
    (`cpu(sample)`; by default of a `measured_with_servers` answer)."""
    ordered = sorted(samples, key=cpu)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


def bench_downloader(aws_env):
    types = [{"id": t, "file_size": n, "data_available_start": 1700000000, "data_available_end": 1800000000}
             for _, t, n in SIZES + [("", PER_FILE, PER_FILE_SIZE), ("", WARM_UP, WARM_UP_SIZE)]]
    bucket = aws_env["REPORTS_BUCKET"]
    cli_env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION="us-east-1")
    s3s_endpoint = f"http://127.0.0.1:{S3S_PORT}"
    rows, moto_rows, costs = [], [], []
    with emulator(types, run_delay_ms=10) as stripe, s3s_fs(bucket) as s3s, discard_sink() as sink:
        base = dict(aws_env, STRIPE_API_KEY=KEY, STRIPE_API_BASE=EMULATOR, STRIPE_FILE_HOSTS="127.0.0.1",
                    REPORTS_PREFIX="bench/", RUST_LOG="warn")
        # The ledger in moto, the objects in s3s-fs (the SDK's per-service endpoint).
        fast = dict(base, AWS_ENDPOINT_URL_S3=s3s_endpoint)
        servers = {"emulator": stripe, "s3s-fs": s3s}
        log("downloader: per file (a 5 MiB + 1 KiB report, median of 5)")
        per_file = {
            "ours": statistics.median(
                measured_with_servers([DOWNLOAD_ONE, finished_run(PER_FILE)[0]], fast, {})[1] for _ in range(5)),
            "floor": statistics.median(
                measured_with_servers([DOWNLOAD_ONE, "--floor", finished_run(PER_FILE)[1], "--sink", sink], base,
                                      {})[1]
                for _ in range(5)),
        }
        for label, report_type, size in SIZES:
            gib = size / GIB
            log(f"downloader: {label}: curl")
            _, url, _ = finished_run(report_type)
            curl_wall, curl_cpu, _, _, curl_servers = measured_with_servers(
                ["curl", "-sf", "-u", KEY + ":", "-o", "/dev/null", url], base, {"emulator": stripe})
            repeats = REPEATS[label]
            log(f"downloader: {label}: floor (median of {repeats})")
            floor_wall, floor_cpu, _, floor_stdout, _ = median_by_cpu(
                measured_with_servers([DOWNLOAD_ONE, "--floor", finished_run(report_type)[1], "--sink", sink],
                                      base, {})
                for _ in range(repeats))[0]
            floor_faults = json.loads(floor_stdout.strip().splitlines()[-1])["minor_faults"]
            log(f"downloader: {label}: ours into s3s-fs (median of {repeats}, the highest peak RSS)")
            samples = [measured_with_servers([DOWNLOAD_ONE, finished_run(report_type)[0]], fast, servers)
                       for _ in range(repeats)]
            wall, cpu, _, stdout, spent = median_by_cpu(samples)[0]
            rss = max(sample[2] for sample in samples)
            ours = json.loads(stdout.strip().splitlines()[-1])
            if ours["bytes"] != size:
                raise RuntimeError(f"{label}: the downloader stored {ours['bytes']} bytes, not {size}")
            log(f"downloader: {label}: AWS CLI into s3s-fs")
            _, url, _ = finished_run(report_type)
            with tempfile.NamedTemporaryFile("r") as cli_report:
                cli_seconds, _, _, _, _ = measured_with_servers(
                    ["bash", "-o", "pipefail", "-c",
                     f"curl -sf -u {KEY}: '{url}' | /usr/bin/time -f '%U %S %M' -o {cli_report.name} "
                     f"{AWS_CLI} s3 cp - s3://{bucket}/awscli/{report_type}.csv --endpoint-url {s3s_endpoint} "
                     f"--expected-size {size} --only-show-errors"], cli_env, {})
                user, system, kib = cli_report.read().split()[-3:]
                cli_cpu, cli_rss = float(user) + float(system), int(kib) / 1024
            rows.append(dict(label=label, gib=gib, size=size, wall=wall, cpu=cpu, rss=rss, servers=spent,
                             mibps=size / MIB / ours["seconds"], floor_cpu=floor_cpu, floor_wall=floor_wall,
                             faults=ours["minor_faults"], floor_faults=floor_faults,
                             curl_mibps=size / MIB / curl_wall, curl_cpu=curl_cpu, curl_emulator=curl_servers["emulator"],
                             cli_mibps=size / MIB / cli_seconds, cli_cpu=cli_cpu, cli_rss=cli_rss))
            log(f"downloader: {label}: ours into moto")
            run_id, _, _ = finished_run(report_type)
            _, _, moto_rss, stdout = peak_rss_and_cpu([DOWNLOAD_ONE, run_id], env=base)
            into_moto = json.loads(stdout.strip().splitlines()[-1])
            moto_rows.append((label, into_moto["mib_per_s"], moto_rss))
        warm = {}
        for label, report_type, size in WARM_SIZES:
            log(f"downloader: {label} in a warm process (median of {WARM_REPEATS})")
            warm[label] = {
                "ours": median_of_json(lambda: [DOWNLOAD_ONE, finished_run(report_type)[0], "--after",
                                                finished_run(WARM_UP)[0]], fast),
                "floor": median_of_json(lambda: [DOWNLOAD_ONE, "--floor", finished_run(report_type)[1], "--sink",
                                                 sink, "--after", finished_run(WARM_UP)[1]], base),
            }
        if cpu_share_available():
            for memory in LAMBDA_MEMORY_SIZES_MB:
                log(f"downloader: 1 GiB at the CPU share of {memory} MB")
                run_id, _, _ = finished_run("bench.1gib.1")
                with cpu_share(memory) as enter:
                    wall, cpu, rss, stdout, _ = measured_with_servers([DOWNLOAD_ONE, run_id], fast, servers,
                                                                      preexec_fn=enter)
                seconds = json.loads(stdout.strip().splitlines()[-1])["seconds"]
                costs.append((memory, seconds, cpu, rss))
    return tables(rows, moto_rows, costs, per_file, warm)


def median_of_json(argv_of_run, env):
    """The measured file's own CPU seconds and page faults (download_one's
    JSON line), median by CPU over WARM_REPEATS processes, with the lowest
    and highest CPU beside it; `argv_of_run` is called once per process
    (each needs fresh runs)."""
    median, low, high = median_by_cpu(
        (json.loads(measured_with_servers(argv_of_run(), env, {})[3].strip().splitlines()[-1])
         for _ in range(WARM_REPEATS)), lambda line: line["cpu_seconds"])
    if low["cpu_seconds"] <= 0:
        raise RuntimeError(f"download_one measured no CPU: {low}")
    return dict(median, low=low["cpu_seconds"], high=high["cpu_seconds"])


def tables(rows, moto_rows, costs, per_file, warm):
    template_mb, timeout = template_function("DownloaderFunction")
    lines = [
        "CPU: the downloader's CPU-seconds (user + system) per GiB stored, against the floor on the same bytes "
        "in the same run (fetched by the same Stripe client, one SHA-256 pass, one copy into a part buffer, "
        "each part written to a plain TCP connection). Each process also has a cost per file, whatever its "
        "size (start-up, the secret, the ledger's reads and writes in moto, the multipart upload's create and "
        "complete). It is taken out with the smallest multipart file, 5 MiB + 1 KiB, whose process CPU (median "
        f"of 5, its 5 MiB of bytes included) was: ours {per_file['ours'] * 1000:.0f} ms, the floor's "
        f"{per_file['floor'] * 1000:.0f} ms. Per GiB is the whole "
        "process's CPU less that file's, over the bytes beyond it, so that each size measures its bytes, not its "
        "start-up. 10 MiB and 100 MiB are medians of 5 and 3 runs. Goal: ≤ 1.3× the floor.",
        "",
        "| size | ours CPU s (whole process) | floor CPU s (whole process) | ours CPU s/GiB | floor CPU s/GiB "
        "| ours / floor | goal ≤ 1.3× | page faults, ours / floor | emulator CPU s/GiB (serving ours) "
        "| s3s-fs CPU s/GiB (storing ours) | curl → /dev/null CPU s/GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        beyond = (row["size"] - PER_FILE_SIZE) / GIB
        ours = max(row["cpu"] - per_file["ours"], 0) / beyond
        floor = max(row["floor_cpu"] - per_file["floor"], 1e-9) / beyond
        ratio = ours / floor
        lines.append(f"| {row['label']} | {row['cpu']:.3f} | {row['floor_cpu']:.3f} | {ours:.2f} | {floor:.2f} "
                     f"| {ratio:.2f}× | {goal_cell(ratio <= 1.3)} | {row['faults']:,} / {row['floor_faults']:,} "
                     f"| {row['servers']['emulator'] / row['gib']:.2f} | {row['servers']['s3s-fs'] / row['gib']:.2f} "
                     f"| {row['curl_cpu'] / row['gib']:.2f} |")
    per_file_warm = warm["5 MiB + 1 KiB"]
    lines += [
        "",
        "The same in a warm process, as a function that has stored files before stores its next one: "
        f"`download_one RUN --after OTHER_RUN` stores a {WARM_UP_SIZE // MIB} MiB file first, then the one "
        "measured; its CPU (getrusage: every thread's, user + system) and page faults count from its "
        "start. The part buffers are the process's (the sink's pool; the floor's one buffer), so a warm file "
        "fills pages already faulted in. Per GiB: less the warm 5 MiB + 1 KiB file's "
        f"(ours {per_file_warm['ours']['cpu_seconds'] * 1000:.1f} ms, the floor's "
        f"{per_file_warm['floor']['cpu_seconds'] * 1000:.1f} ms), over the bytes beyond it; medians of "
        f"{WARM_REPEATS} processes, the lowest and highest beside them: at 10 MiB the difference is a few "
        "milliseconds, and a millisecond either way moves the ratio by about a fifth. Goal: ≤ 1.3× the floor.",
        "",
        "| size, warm | ours CPU ms (lowest–highest) | floor CPU ms (lowest–highest) | ours page faults "
        "| floor page faults | ours CPU s/GiB | floor CPU s/GiB | ours / floor | goal ≤ 1.3× |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(measured):
        return (f"{measured['cpu_seconds'] * 1000:.1f} ({measured['low'] * 1000:.1f}–"
                f"{measured['high'] * 1000:.1f})")

    for label, _, size in WARM_SIZES:
        ours, floor = warm[label]["ours"], warm[label]["floor"]
        cells = f"| {label} | {ms(ours)} | {ms(floor)} | {ours['minor_faults']:,} | {floor['minor_faults']:,} "
        if size == PER_FILE_SIZE:
            lines.append(cells + "| | | | |")
            continue
        beyond = (size - PER_FILE_SIZE) / GIB
        ours_gib = (ours["cpu_seconds"] - per_file_warm["ours"]["cpu_seconds"]) / beyond
        floor_gib = (floor["cpu_seconds"] - per_file_warm["floor"]["cpu_seconds"]) / beyond
        if ours_gib <= 0 or floor_gib <= 0:
            lines.append(cells + f"| {ours_gib:.2f} | {floor_gib:.2f} | | **no**: below the per-file cost, "
                         "noise larger than the file |")
            continue
        ratio = ours_gib / floor_gib
        lines.append(cells + f"| {ours_gib:.2f} | {floor_gib:.2f} | {ratio:.2f}× | {goal_cell(ratio <= 1.3)} |")
    lines += [
        "",
        "Speed and memory, into s3s-fs. Goals: ≥ 1.0× the AWS CLI's MiB/s at ≤ ⅓ of its peak RSS; peak RSS "
        f"≤ {RSS_GOAL_MIB} MiB at every size.",
        "",
        "| size | ours MiB/s | ours peak RSS MiB | goal ≤ 32 MiB | AWS CLI MiB/s | AWS CLI peak RSS MiB "
        "| ours / AWS CLI speed | ours / AWS CLI memory | goal ≥ 1.0× at ≤ ⅓ | curl → /dev/null MiB/s | ours / curl "
        "| ours into moto MiB/s, peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, (_, moto_mibps, moto_rss) in zip(rows, moto_rows):
        speed, memory = row["mibps"] / row["cli_mibps"], row["rss"] / row["cli_rss"]
        lines.append(f"| {row['label']} | {row['mibps']:.1f} | {row['rss']:.1f} | {goal_cell(row['rss'] <= RSS_GOAL_MIB)} "
                     f"| {row['cli_mibps']:.1f} | {row['cli_rss']:.1f} | {speed:.2f}× | {memory:.2f} "
                     f"| {goal_cell(speed >= 1.0 and memory <= 1 / 3)} | {row['curl_mibps']:.1f} "
                     f"| {row['mibps'] / row['curl_mibps']:.2f} | {moto_mibps:.1f}, {moto_rss:.1f} |")
    if costs:
        gib_row = rows[-1]
        lines += [
            "",
            "Cost: storing 1 GiB under a cgroup CPU quota equal to each Lambda size's CPU share (1,769 MB = one "
            "vCPU), the servers unthrottled. Derived: the CPU-seconds per GiB above × 1,769 / memory, the time a "
            "CPU-bound download takes at that share. GB-seconds = memory (GB) × seconds per GiB stored, what Lambda "
            f"bills; USD at ${LAMBDA_ARM64_PRICE_PER_GB_SECOND:.10f} per GB-second (arm64, the template's default).",
            "",
            "| memory MB | vCPU share | measured s | MiB/s | CPU s | peak RSS MiB | GB-s per GiB | USD per 1,000 GiB "
            "| derived s (CPU-bound) | fits (memory, timeout) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        cpu_per_gib = gib_row["cpu"] / gib_row["gib"]
        for memory, seconds, cpu, rss in costs:
            gb_seconds = memory / 1024 * seconds
            fits = rss < memory * 1e6 / MIB / 2 and seconds < timeout / 2
            lines.append(f"| {memory} | {memory / MB_PER_VCPU:.3f} | {seconds:.1f} | {1024 / seconds:.1f} | {cpu:.2f} "
                         f"| {rss:.1f} | {gb_seconds:.2f} | {gb_seconds * LAMBDA_ARM64_PRICE_PER_GB_SECOND * 1000:.3f} "
                         f"| {cpu_per_gib * MB_PER_VCPU / memory:.1f} | {goal_cell(fits)} |")
        cheapest = min(costs, key=lambda c: c[0] / 1024 * c[1])
        lines += ["", f"Cheapest per GiB: {cheapest[0]} MB. The template's downloader has {template_mb} MB: "
                      "a CPU-bound download costs about the same GB-seconds at every size (time shrinks as the share "
                      "grows), and below one vCPU nothing else bounds it, so the smallest size that fits is the "
                      "cheapest; on AWS the network (Stripe's file host, S3) bounds the larger sizes first, which "
                      "only makes them dearer. \"Fits\": peak RSS under half the memory (two files at once, "
                      "DOWNLOAD_CONCURRENCY 2) and a 1 GiB file in under half the "
                      f"{timeout} s timeout."]
    else:
        lines += ["", "(No cgroup v1 CPU controller writable here: no cost table.)"]
    return lines


def measure(aws_env):
    return bench_downloader(aws_env) + ["", NOTE]


NOTE = ("Ours: the release downloader (`download_one`, the Lambda's configuration: 5 MiB parts, 2 in flight, "
        "payload signing off, CRC32 checksums on) fetching each emulator report over HTTP and storing it with "
        "its SHA-256 and size checks, the ledger in moto; the objects in s3s-fs (`make bench-tools` installs it: "
        "a Rust S3 server over a folder, here on /dev/shm) and, for continuity, in moto's S3 (Python). 1 GiB is "
        "measured once, 10 MiB and 100 MiB are medians of 5 and 3; peak RSS by GNU time (a child forked from the "
        "bench's Python process would count its pages), CPU seconds by wait4, to the microsecond. On a 2-core "
        "machine the emulator, the S3 server and the downloader share the CPU, so MiB/s mostly measures the "
        "servers (their CPU-seconds are beside ours): CPU-seconds per GiB is the downloader's own figure, and "
        "what sets its speed in a 128 MB Lambda. AWS CLI: `curl | aws s3 cp -` with its defaults (8 MiB parts, "
        "10 concurrent requests); its CPU and RSS exclude curl. What is beyond the floor, and what of it happens "
        "against real S3: see docs/benchmarks.md.")
