#!/usr/bin/env python3
"""Two paird builds and the prototype, interleaved, with side-by-side.py's scenarios and runners
(../shared/reference/side-by-side.py, beside the project): prints each figure's medians and the
ratios new/prototype and new/base.

    python3 scripts/side-by-side-ab.py --base DIR --new DIR [--rounds 3] [--only connected,fresh]

Each DIR holds a `paird` and a `paird-loadtest` (a release build's target/release, or a copy).
"""
import importlib.util, statistics, sys, argparse
import os
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "sbs", os.path.join(HERE, "..", "..", "shared", "reference", "side-by-side.py"))
sbs = importlib.util.module_from_spec(spec); spec.loader.exec_module(sbs)
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--only", default="connected,fresh,rate10k")
ap.add_argument("--base", required=True)
ap.add_argument("--new", required=True)
a = ap.parse_args()
sbs.build_prototype()
class B: pass
base = B(); base.paird = f"{a.base}/paird"; base.loadtest = f"{a.base}/paird-loadtest"
new = B(); new.paird = f"{a.new}/paird"; new.loadtest = f"{a.new}/paird-loadtest"
names = a.only.split(",")
res = {n: {"base": [], "new": [], "proto": []} for n in names}
for r in range(a.rounds):
    for n in names:
        pa, pr = sbs.SCENARIOS[n]
        order = [("base", base), ("new", new)] if r % 2 == 0 else [("new", new), ("base", base)]
        for k, b in order:
            res[n][k].append(sbs.run_paird(b, pa))
        res[n]["proto"].append(sbs.run_proto(pr))
        print(f"round {r+1} {n}: base {res[n]['base'][-1]} new {res[n]['new'][-1]} proto {res[n]['proto'][-1]}", file=sys.stderr, flush=True)
print(f"{'scenario':<10} {'figure':<7} {'base':>9} {'new':>9} {'proto':>9} {'base/pr':>8} {'new/pr':>8} {'new/base':>9}")
for n in names:
    for f in ("per_s", "p50", "p99"):
        b = statistics.median(x[f] for x in res[n]["base"]); w = statistics.median(x[f] for x in res[n]["new"]); q = statistics.median(x[f] for x in res[n]["proto"])
        print(f"{n:<10} {f:<7} {b:>9.1f} {w:>9.1f} {q:>9.1f} {b/q:>8.2f} {w/q:>8.2f} {w/b:>9.2f}")
print(f"({a.rounds} interleaved rounds, medians)")
