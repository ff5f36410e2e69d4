#!/usr/bin/env python3
"""A pairing burst with the Devices page open, against the same burst without it and with the
bare live feed, interleaved (the order reversed every round); prints the medians of pairings/s
and of the server's CPU per pairing. Issue 15's target: with the page within 5% of without.

    cargo build --release -p server -p loadtest
    python3 scripts/burst-with-page.py --rounds 10

Each run is `paird-loadtest --start-server enroll --devices 19000 --verify` on a throwaway
server (loopback only, bounded), with `--page "python3 scripts/portal-page.py hold"` (headless
Chromium holding the page open) or `--watch`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {
    "page": ["--page", f"python3 {os.path.join(ROOT, 'scripts', 'portal-page.py')} hold"],
    "none": [],
    "watch": ["--watch"],
}


def run(target, extra, devices):
    out = subprocess.run(
        [f"{target}/paird-loadtest", "--start-server", "--paird", f"{target}/paird", "--json",
         "enroll", "--devices", str(devices), "--verify"] + extra,
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    result = json.loads(out.stdout)
    if result.get("verification"):
        raise SystemExit(f"verification failed: {result['verification']}")
    pair = next(p for p in result["phases"] if p["name"] == "pair")
    return pair["per_second"], pair["server_cpu_us_per_op"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--devices", type=int, default=19000)
    ap.add_argument("--target", default=os.path.join(ROOT, "target", "release"))
    a = ap.parse_args()
    results = {kind: [] for kind in KINDS}
    for r in range(a.rounds):
        kinds = list(KINDS.items())
        for kind, extra in (kinds if r % 2 == 0 else kinds[::-1]):
            results[kind].append(run(a.target, extra, a.devices))
            print(f"round {r + 1} {kind}: {results[kind][-1][0]:.0f}/s, "
                  f"{results[kind][-1][1]:.1f} us/pairing", file=sys.stderr, flush=True)
    without = statistics.median(x[0] for x in results["none"])
    for kind, runs in results.items():
        per_s = statistics.median(x[0] for x in runs)
        cpu = statistics.median(x[1] for x in runs)
        print(f"{kind:<6} pairings/s median {per_s:8.0f}  ratio to none {per_s / without:.3f}  "
              f"server CPU per pairing median {cpu:.1f} us")


if __name__ == "__main__":
    main()
