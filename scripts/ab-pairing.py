#!/usr/bin/env python3
"""Interleaved A/B of pairing between builds: pairings/s and the server's CPU per pairing.

    python3 scripts/ab-pairing.py ROUNDS NAME=DIR [NAME=DIR ...]

Each DIR holds a `paird` and a `paird-loadtest` (a release build's target/release, or a copy of
one). Every round runs `paird-loadtest --start-server --json enroll --devices 18000` once per
build, fresh (`--mode fresh`: a new connection per device) and connected, the builds' order
reversed every other round; prints the medians. Loopback only, bounded, throwaway servers.
Run it while nothing else uses the cores.
"""
import json
import statistics
import subprocess
import sys

MODES = {"fresh": ["--mode", "fresh"], "connected": []}


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    rounds = int(sys.argv[1])
    builds = [arg.split("=", 1) for arg in sys.argv[2:]]
    results = {(name, mode): [] for name, _ in builds for mode in MODES}
    for r in range(rounds):
        for mode, extra in MODES.items():
            for name, directory in (builds if r % 2 == 0 else builds[::-1]):
                out = subprocess.run(
                    [f"{directory}/paird-loadtest", "--start-server", "--paird",
                     f"{directory}/paird", "--json", "enroll", "--devices", "18000"] + extra,
                    capture_output=True, text=True, timeout=300)
                pair = next(p for p in json.loads(out.stdout)["phases"] if p["name"] == "pair")
                results[(name, mode)].append((pair["server_cpu_us_per_op"], pair["per_second"]))
        print(f"round {r + 1} done", file=sys.stderr, flush=True)
    for (name, mode), runs in results.items():
        cpu = statistics.median(x[0] for x in runs)
        per_s = statistics.median(x[1] for x in runs)
        print(f"{name:<12} {mode:<10} server CPU per pairing {cpu:6.1f} us   pairings/s {per_s:8.0f}")


if __name__ == "__main__":
    main()
