#!/usr/bin/env python3
"""The disk's own fsync latency, for comparison with the store's: appends 30 KB (about one group
commit of ~100 claims) and fsyncs, N times, in DIR. Usage: bench/fsync-probe.py [DIR] [N]"""
import os
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
path = os.path.join(directory, "hongbao-fsync-probe.bin")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
block = b"x" * 30_000
ms = []
try:
    for _ in range(n):
        os.write(fd, block)
        t = time.perf_counter()
        os.fsync(fd)
        ms.append((time.perf_counter() - t) * 1000)
finally:
    os.close(fd)
    os.remove(path)
ms.sort()
pick = lambda q: ms[min(len(ms) - 1, int(len(ms) * q))]
print(f"fsync of a 30 KB append, {n} times in {directory}: p50 {pick(0.5):.2f} ms, p90 {pick(0.9):.2f} ms, "
      f"p99 {pick(0.99):.2f} ms, p99.9 {pick(0.999):.2f} ms, max {ms[-1]:.2f} ms")
