"""What the benchmarks in bench/ share: paths, the emulator, timing a child
process, and the goal cell of every table row."""
import contextlib
import datetime
import json
import os
import re
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

# Cargo's target folder (CARGO_TARGET_DIR when set, as cargo reads it).
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
RELEASE = os.path.join(TARGET, "release")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
AWS_CLI = os.path.join(ROOT, ".venv-bench", "bin", "aws")
NODE_DIR = os.path.join(HERE, ".node")
KEY = "sk_test_bench"
EMULATOR_PORT = int(os.environ.get("BENCH_EMULATOR_PORT", "12199"))
EMULATOR = f"http://127.0.0.1:{EMULATOR_PORT}"
MIB = 1024 * 1024


def log(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        memory = int(info.readline().split()[1]) // 1024 // 1024
    commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
    dirty = " (with uncommitted changes)" if run(["git", "status", "--porcelain"], cwd=ROOT).strip() else ""
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit}{dirty}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {memory} GiB, {platform.system()} {platform.release()}",
        f"- {run(['rustc', '-V']).strip()}; Python {platform.python_version()}"
        + (f"; Node {run(['node', '--version']).strip()}" if shutil.which("node") else ""),
    ]


def stripe_api(method, path, form=None):
    data = None if form is None else "&".join(f"{k}={v}" for k, v in form.items()).encode()
    request = urllib.request.Request(EMULATOR + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + KEY)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def finished_run(report_type):
    run_id = stripe_api("POST", "/v1/reporting/report_runs", {
        "report_type": report_type, "parameters[interval_start]": "1790000000",
        "parameters[interval_end]": "1790086400"})["id"]
    for _ in range(100):
        found = stripe_api("GET", f"/v1/reporting/report_runs/{run_id}")
        if found["status"] == "succeeded":
            return run_id, found["result"]["url"], found["result"]["size"]
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id} never finished")


def timed(argv, env=None):
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


@contextlib.contextmanager
def emulator(types, run_delay_ms, accounts=None):
    """The release Stripe emulator serving `types`, until the block ends: to
    the one account of KEY, or to each of `accounts` ((id, key, secret))."""
    served = (["--accounts", json.dumps([{"id": acct, "api_key": key, "webhook_secrets": [secret]}
                                         for acct, key, secret in accounts])] if accounts else ["--api-key", KEY])
    with server([os.path.join(RELEASE, "stripe-emulator"), "--listen", f"127.0.0.1:{EMULATOR_PORT}", *served,
                 "--run-delay-ms", str(run_delay_ms), "--report-types", json.dumps(types)], EMULATOR_PORT) as process:
        yield process


@contextlib.contextmanager
def server(argv, port):
    """The server `argv` starts, once it listens on `port`, until the block
    ends; yields its process (for its CPU seconds)."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield process
    finally:
        process.terminate()
        process.wait()


def wait_port(port, host="127.0.0.1", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def cpu_seconds_of(pid):
    """CPU seconds (user + system) a running process has used so far: for a
    server's share of a measurement, read before and after."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def goal_cell(holds):
    """A table's "goal holds" cell: plain when it holds, bold when it does not."""
    return "yes" if holds else "**no**"



# Lambda gives a function CPU in proportion to its memory: 1,769 MB is one
# vCPU (AWS Lambda developer guide, "Configuring memory"), so 128 MB is 128/1769
# of one. The sizes every cost table measures:
LAMBDA_MEMORY_SIZES_MB = (128, 256, 512, 1024, 1769)
MB_PER_VCPU = 1769
CGROUP_CPU = "/sys/fs/cgroup/cpu"
# What Lambda bills per GB-second in us-east-1 (the per-request charge left
# out): x86_64, and arm64 (the template's default architecture, samconfig.toml).
# A ratio between sizes does not depend on either.
LAMBDA_PRICE_PER_GB_SECOND = 0.0000166667
LAMBDA_ARM64_PRICE_PER_GB_SECOND = 0.0000133334


def cpu_share_available():
    """Whether a cgroup v1 CPU quota can be set here (root, cpu controller mounted)."""
    return os.access(os.path.join(CGROUP_CPU, "cgroup.procs"), os.W_OK)


@contextlib.contextmanager
def cpu_share(memory_mb):
    """A cgroup v1 `cpu` group whose CFS quota is a Lambda function's CPU at
    `memory_mb`; yields a `preexec_fn` that puts a child into it."""
    group = os.path.join(CGROUP_CPU, f"bench-{memory_mb}mb-{os.getpid()}")
    os.makedirs(group, exist_ok=True)
    try:
        period = 100_000
        with open(os.path.join(group, "cpu.cfs_period_us"), "w") as out:
            out.write(str(period))
        with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as out:
            out.write(str(max(1000, period * memory_mb // MB_PER_VCPU)))

        def enter():
            with open(os.path.join(group, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))

        yield enter
    finally:
        # The group can only go once no process is left in it.
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.1)


def peak_rss_and_cpu(argv, env=None, preexec_fn=None):
    """Runs `argv` in a fresh process under GNU time: (wall s, CPU s (user +
    system), peak RSS MiB, stdout). GNU time reads the child's own ru_maxrss:
    a child forked straight from this Python process would count this
    process's pages too (ru_maxrss includes the image before exec). The CPU
    seconds are wait4's for GNU time and the child it reaped, to the
    microsecond (GNU time prints hundredths, too coarse for a small file)."""
    import tempfile

    with tempfile.NamedTemporaryFile("r") as report, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", report.name, *argv], env=env, stdout=out,
                                 stderr=err, preexec_fn=preexec_fn)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} failed: {err.read().decode(errors='replace')[-800:]}")
        kib = report.read().split()[-1]
        return seconds, usage.ru_utime + usage.ru_stime, int(kib) / 1024, out.read().decode()


def template_function(name):
    """The MemorySize and Timeout of template.yaml's function `name` (e.g.
    `ConverterFunction`): the cost tables say whether they are the sizes
    the measurements choose."""
    with open(os.path.join(ROOT, "template.yaml")) as template:
        text = template.read()
    function = text[text.index(f"\n  {name}:"):]
    function = function[:re.search(r"\n  \w+:\n", function[1:]).start() + 1]
    return (int(re.search(r"\n      MemorySize: (\d+)", function).group(1)),
            int(re.search(r"\n      Timeout: (\d+)", function).group(1)))
