"""The report of bench/one-node.sh: reads its work directory and prints markdown tables.

Usage: python3 bench/one-node-report.py WORK CLK_TCK

WORK holds `runs` (one line per wrk run: name, title, distinct requests, Redis ports), and per
run NAME.wrk (wrk's output), NAME.before and NAME.after (snapshots: `time UNIX_S`, `cpu LABEL TICKS` per
process, `core cpuN BUSY TOTAL` per core from /proc/stat, `cmd PORT cmdstat_X:calls=N,...`,
`js MESSAGES`, `store COMMANDS`), and for the cluster runs shards-S.homes (`PORT SHARD`: which master holds each
claim shard's slot).
"""

import collections
import re
import sys


def parse_wrk(path):
    text = open(path).read()

    def first(pattern, default=None):
        m = re.search(pattern, text, re.M)
        return m.group(1) if m else default

    timeouts = sum(int(x) for x in re.findall(r"timeout (\d+)", text))
    return {
        "rps": float(first(r"Requests/sec:\s+([\d.]+)", "0")),
        "requests": int(first(r"^\s*(\d+) requests in", "0")),
        "p50": first(r"^\s+50%\s+(\S+)", "-"),
        "p99": first(r"^\s+99%\s+(\S+)", "-"),
        "non2xx": int(first(r"Non-2xx or 3xx responses: (\d+)", "0")),
        "timeouts": timeouts,
    }


def parse_snapshot(path):
    cpu, cores, cmds, counts, at = {}, {}, collections.defaultdict(dict), {}, None
    for line in open(path):
        kind, rest = line.split(" ", 1)
        if kind == "time":
            at = float(rest)
        elif kind == "cpu":
            label, ticks = rest.split()
            cpu[label] = int(ticks)
        elif kind == "core":
            name, busy, total = rest.split()
            cores[name] = (int(busy), int(total))
        elif kind == "cmd":
            port, stat = rest.split(" ", 1)
            name, fields = stat.strip().split(":", 1)
            calls = int(fields.split(",")[0].split("=")[1])
            cmds[port][name.removeprefix("cmdstat_")] = calls
        elif kind in ("js", "store"):
            counts[kind] = int(rest)
    return at, cpu, cores, cmds, counts


class Run:
    def __init__(self, work, line):
        self.name, self.title, distinct, ports = line.rstrip("\n").split("\t")
        self.distinct, self.ports = int(distinct), ports.split()
        self.wrk = parse_wrk(f"{work}/{self.name}.wrk")
        at0, cpu0, cores0, cmd0, counts0 = parse_snapshot(f"{work}/{self.name}.before")
        at1, cpu1, cores1, cmd1, counts1 = parse_snapshot(f"{work}/{self.name}.after")
        # The window between the snapshots: wrk's load, without its start-up.
        self.window_s = max(at1 - at0, 1e-3)
        self.cpu = {k: cpu1[k] - cpu0.get(k, 0) for k in cpu1}
        # Each core's busy share of the run (any process's, this run's or not).
        self.cores = {
            k: (b1 - cores0[k][0]) / max(t1 - cores0[k][1], 1)
            for k, (b1, t1) in cores1.items()
            if k in cores0
        }
        # Per port, per command: calls during the run, without this script's own INFO probes.
        self.cmds = {
            port: {
                k: n - cmd0.get(port, {}).get(k, 0)
                for k, n in cmd1.get(port, {}).items()
                if k != "info" and n - cmd0.get(port, {}).get(k, 0)
            }
            for port in self.ports
        }
        # JetStream's new messages and the embedded store's commands, where watched.
        self.counts = {k: n - counts0[k] for k, n in counts1.items() if k in counts0}
        self.published = self.counts.get("js")
        # Past its distinct requests wrk repeats them (a repeated claim is a replay, 200).
        self.wrapped = self.distinct and self.wrk["requests"] > self.distinct

    def accepted(self):
        """Claims accepted in the window: JetStream's new messages on a distributed node (an
        accepted claim is answered only once its publish is acknowledged, and an api node runs
        no sweeper), the store's commands on an embedded one (a replay or a refusal is none)."""
        if self.published is not None:
            return self.published
        return self.counts.get("store", self.wrk["requests"] - self.wrk["non2xx"])

    def commands(self, port=None):
        ports = [port] if port else self.ports
        return sum(sum(self.cmds[p].values()) for p in ports)

    def command(self, name):
        return sum(self.cmds[p].get(name, 0) for p in self.ports)


def fmt_non2xx(w):
    extra = f" (+{w['timeouts']} timeouts)" if w["timeouts"] else ""
    return f"{w['non2xx']}{extra}"


def main_table(runs, floor_rps):
    print("| run | requests/s | × floor | p50 | p99 | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        w = r.wrk
        mark = " †" if r.wrapped else ""
        print(f"| {r.title}{mark} | {w['rps']:.0f} | {w['rps'] / floor_rps:.2f} | {w['p50']} | "
              f"{w['p99']} | {fmt_non2xx(w)} |")
    if any(r.wrapped for r in runs):
        print("\n† wrk sent more requests than it has distinct ones: the rest were repeats (a"
              " repeated claim is a replay, answered 200); give more USERS.")


def us_per(ticks, hz, n):
    return f"{ticks / hz / max(n, 1) * 1e6:.0f}"


def claim_table(runs, hz):
    print("| claim run | accepted in the window | Redis commands / claim | EVALSHA / claim | "
          "publishes per batch | CPU µs / claim: node · Redis · nats-server |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in runs:
        n = r.accepted()
        marks = r.command("exec")
        per_batch = f"{r.published / marks:.1f}" if marks and r.published is not None else "-"
        redis_ticks = sum(t for k, t in r.cpu.items() if k.startswith(("redis", "master")))
        cpu = [us_per(r.cpu.get("node", 0), hz, n)]
        if r.ports:
            cpu += [us_per(redis_ticks, hz, n), us_per(r.cpu.get("nats-server", 0), hz, n)]
            commands = f"{r.commands() / max(n, 1):.2f}"
            evalsha = f"{r.command('evalsha') / max(n, 1):.2f}"
        else:
            commands = evalsha = "-"
        print(f"| {r.title} | {n} | {commands} | {evalsha} | {per_batch} | {' · '.join(cpu)} |")
    print("\nPublishes per batch: JetStream's new messages ÷ the MULTI/EXEC transactions that mark")
    print("a batch published (one per batch and claim shard it touches: with 12 shards, per")
    print("batch-and-shard). By command, per accepted claim:")
    for r in (r for r in runs if r.ports):
        n = max(r.accepted(), 1)
        calls = collections.Counter()
        for port in r.ports:
            calls.update(r.cmds[port])
        top = ", ".join(f"{k} {v / n:.2f}" for k, v in calls.most_common(12))
        print(f"- {r.title}: {top}")


def cluster_table(work, runs, hz):
    print("| claim shards | claims/s | p99 | shards per master | each master's share of the "
          "masters' CPU | masters' CPU µs / claim | Redis commands / claim (per master) |")
    print("| ---: | ---: | ---: | --- | --- | ---: | --- |")
    for r in runs:
        shards = r.name.split("-")[1]
        homes = collections.Counter(line.split()[0] for line in open(f"{work}/shards-{shards}.homes"))
        ticks = {p: r.cpu.get(f"master-{p}", 0) for p in r.ports}
        total = max(sum(ticks.values()), 1)
        n = max(r.accepted(), 1)
        share = " / ".join(f"{100 * ticks[p] / total:.0f} %" for p in r.ports)
        spread = " / ".join(str(homes.get(p, 0)) for p in r.ports)
        per = " + ".join(f"{r.commands(p) / n:.2f}" for p in r.ports)
        print(f"| {shards} | {r.wrk['rps']:.0f} | {r.wrk['p99']} | {spread} | {share} | "
              f"{us_per(sum(ticks.values()), hz, n)} | {r.commands() / n:.2f} ({per}) |")


def utilisation(runs, hz):
    print("Busy share of a core during each run's window (from wrk's connections up to its end;")
    print("processes: their CPU time; cores: /proc/stat, whatever ran there, wrk on core 1 too):")
    for r in runs:
        busy = ", ".join(f"{k} {100 * t / hz / r.window_s:.0f} %" for k, t in r.cpu.items())
        cores = ", ".join(f"{k} {100 * b:.0f} %" for k, b in sorted(r.cores.items()))
        print(f"- {r.title} ({r.window_s:.1f} s): {busy}; cores: {cores}")


def main():
    work, hz = sys.argv[1], int(sys.argv[2])
    runs = [Run(work, line) for line in open(f"{work}/runs") if line.strip()]
    floor = next(r for r in runs if r.name == "floor")
    if floor.wrk["rps"] <= 0:
        sys.exit("one-node-report: the floor run answered nothing; see its wrk output")
    main_table(runs, floor.wrk["rps"])
    claims = [r for r in runs if r.name.endswith("-claim")]
    if claims:
        print()
        claim_table(claims, hz)
    cluster = [r for r in claims if r.name.startswith("cluster-")]
    if cluster:
        print()
        cluster_table(work, cluster, hz)
    print()
    utilisation(runs, hz)


if __name__ == "__main__":
    main()
