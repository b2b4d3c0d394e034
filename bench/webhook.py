"""2. Webhook: verify + parse + decide against stripe-python and stripe-node."""
import json
import os
import shutil
import subprocess

from common import HERE, NODE_DIR, ROOT, VENV_BIN, log, run

NAME = "webhook"
TITLE = "Webhook"
NEEDS_AWS = False


def bench_webhook():
    payloads = os.path.join(ROOT, "target", "bench-webhook")
    log("webhook: criterion")
    subprocess.run(["cargo", "bench", "-q", "-p", "stripe-reports", "--bench", "webhook", "--",
                    "--warm-up-time", "1", "--measurement-time", "3"], check=True, cwd=ROOT,
                   env=dict(os.environ, WEBHOOK_BENCH_PAYLOADS=payloads), stdout=subprocess.DEVNULL)
    node = shutil.which("node") and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "stripe"))
    python_version = run([os.path.join(VENV_BIN, "python"), "-c", "import stripe; print(stripe.VERSION)"]).strip()
    node_version = (json.load(open(os.path.join(NODE_DIR, "node_modules", "stripe", "package.json")))["version"]
                    if node else None)
    table = ["| payload | ours (criterion median) µs | stripe-python " + python_version + " construct_event µs "
             "| python / ours |" + (f" stripe-node {node_version} constructEvent µs | node / ours |" if node else ""),
             "|---|---|---|---|" + ("---|---|" if node else "")]
    for label in ("2KB", "20KB"):
        estimates = json.load(open(os.path.join(ROOT, "target", "criterion", "webhook", "verify_parse_decide",
                                                label, "new", "estimates.json")))
        ours = estimates["median"]["point_estimate"]
        case = os.path.join(payloads, f"{label}.json")
        size = len(json.load(open(case))["body"])
        log(f"webhook: peers on {label}")
        python = float(run([os.path.join(VENV_BIN, "python"), os.path.join(HERE, "webhook_python.py"), case]))
        row = f"| {label[:-2]} KB ({size} B) | {ours / 1000:.2f} | {python / 1000:.2f} | {python / ours:.1f}× |"
        if node:
            js = float(run(["node", os.path.join(HERE, "webhook_node.js"), case],
                           env=dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"))))
            row += f" {js / 1000:.2f} | {js / ours:.1f}× |"
        table.append(row)
    if not node:
        table.append("")
        table.append("(Node.js or the `stripe` npm package not available: no Node column.)")
    return table


def measure(aws_env):
    return bench_webhook() + ["", NOTE]


NOTE = "Ours: signature verification, event parse and route decision (`decide`), nothing written. Peers: their library's verify + parse on the same bytes, header and secret (Python: median of 7 × 2,000; Node: median of 7 × 5,000)."
