"""Classification throughput: the content scanner (Rust, through the same
``mxg._core.scan`` entry the CLI uses) and the rules (Python), over the
test corpus of varied messages, and their share of mxg's CPU per relayed
message.

    python -m bench.classify [--messages 300] [--repeat 5]
                             [--relay-json bench/results/bench-….json]

In the relay the scan runs in the inbound session while the spool syncs
the message, and the rules run in the control plane on the "received"
event; both are in the relay bench's CPU figure. This bench takes them
apart: with ``--relay-json`` (a ``bench.run`` result) it prints their
share of mxg's CPU milliseconds per relayed message per scenario. Build
the extension with ``maturin develop --release`` first: a debug build
scans several times slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from pathlib import Path

from mxg import _core
from mxg.boundary import draft_envelope
from mxg.classify import classify
from mxg.config import Config
from tests.support.corpus import AKTENZEICHEN, KEYWORDS, corpus

RULES = f"""
[[rule]]
name = "iban"
class = "high"
detector = "iban"

[[rule]]
name = "tax"
class = "high"
detector = "tax-id"

[[rule]]
name = "cards"
class = "high"
detector = "card"

[[rule]]
name = "kvnr"
class = "high"
detector = "kvnr"

[[rule]]
name = "health"
class = "high"
keywords = {json.dumps(list(KEYWORDS), ensure_ascii=False)}
min_count = 2

[[rule]]
name = "aktenzeichen"
class = "secret"
patterns = [{json.dumps(AKTENZEICHEN)}]
"""


def measure(messages: list[bytes], cfg: Config) -> dict[str, float]:
    options = json.dumps(cfg.scan_options())
    envelope = draft_envelope("a@example.org", ["b@partner.example"])
    _core.scan(messages[0], options)  # compiles the scanner once, as the relay does
    wall, cpu = time.perf_counter(), time.process_time()
    features = [_core.scan(m, options) for m in messages]
    scan_wall, scan_cpu = time.perf_counter() - wall, time.process_time() - cpu
    cpu = time.process_time()
    for f in features:
        classify(cfg, envelope, json.loads(f))
    rules_cpu = time.process_time() - cpu
    n = len(messages)
    size = sum(len(m) for m in messages)
    return {
        "scan_msgs_per_s": n / scan_wall,
        "scan_mb_per_s": size / scan_wall / 1e6,
        "scan_cpu_ms_per_msg": scan_cpu * 1000 / n,
        "rules_cpu_ms_per_msg": rules_cpu * 1000 / n,
        "cpu_ms_per_msg": (scan_cpu + rules_cpu) * 1000 / n,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--relay-json", help="a bench.run result for the share of mxg's CPU")
    args = p.parse_args()
    cfg = Config.model_validate(tomllib.loads(RULES))
    messages = [s.message for s in corpus(n=args.messages)]
    runs = [measure(messages, cfg) for _ in range(args.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mean_kb = sum(len(m) for m in messages) / len(messages) / 1024
    print(
        f"corpus: {len(messages)} messages, mean {mean_kb:.1f} KB, 6 rules "
        f"(4 detectors, 1 keyword list, 1 regex list); median of {args.repeat} runs"
    )
    print(
        f"scan  : {med['scan_msgs_per_s']:,.0f} msgs/s ({med['scan_mb_per_s']:.1f} MB/s), "
        f"{med['scan_cpu_ms_per_msg']:.3f} CPU ms/msg"
    )
    print(f"rules : {med['rules_cpu_ms_per_msg']:.3f} CPU ms/msg")
    print(
        f"total : {med['cpu_ms_per_msg']:.3f} CPU ms/msg = "
        f"{1000 / med['cpu_ms_per_msg']:,.0f} msgs/s on one core"
    )
    if args.relay_json:
        relay = json.loads(Path(args.relay_json).read_text())
        for key, m in relay["medians"].items():
            scenario, name = key.split("/")
            if name == "mxg":
                share = med["cpu_ms_per_msg"] / m["cpu_ms_per_msg"] * 100
                print(
                    f"share of mxg's CPU per relayed message ({scenario}, "
                    f"{m['cpu_ms_per_msg']:.3f} ms/msg): {share:.1f} %"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
