#!/usr/bin/env python3
"""Pacing accuracy from the game simulator's own delivery log (JSON lines with `game` and
`applied_at_ms`): per game, deliveries applied in each whole second while it had a backlog,
divided by its capacity; and the most applied in any sliding one-second window.

Usage: bench/pacing.py GAME_LOG CAMPAIGN_TOML [CAPACITY_SCALE]
"""
import bisect
import json
import sys
import tomllib
from collections import defaultdict

log_path, campaign_path = sys.argv[1], sys.argv[2]
scale = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
with open(campaign_path, "rb") as f:
    campaign = tomllib.load(f)
capacity = {g["id"]: max(1, round(g["delivery_capacity_per_s"] * scale)) for g in campaign["games"]}

times = defaultdict(list)
with open(log_path) as f:
    for line in f:
        if line.strip():
            r = json.loads(line)
            times[r["game"]].append(r["applied_at_ms"])

print("| game | capacity/s | deliveries | seconds measured | mean applied/s ÷ capacity | lowest second | highest second | max in any sliding 1 s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
total = 0
for game, ts in sorted(times.items(), key=lambda kv: -capacity.get(kv[0], 0)):
    ts.sort()
    total += len(ts)
    cap = capacity[game]
    first, last = ts[0] // 1000, ts[-1] // 1000
    per_second = defaultdict(int)
    for t in ts:
        per_second[t // 1000] += 1
    # Whole seconds strictly inside the busy period: the first and last are partial.
    inner = [per_second[s] for s in range(first + 1, last)]
    sliding = 0
    for i, t in enumerate(ts):
        j = bisect.bisect_right(ts, t + 999)
        sliding = max(sliding, j - i)
    if inner:
        mean = sum(inner) / len(inner) / cap
        print(f"| {game} | {cap} | {len(ts)} | {len(inner)} | {mean:.3f} | {min(inner) / cap:.3f} | {max(inner) / cap:.3f} | {sliding} ({sliding / cap:.3f}) |")
    else:
        print(f"| {game} | {cap} | {len(ts)} | 0 | - | - | - | {sliding} ({sliding / cap:.3f}) |")
print()
print(f"{total} deliveries in the log")
