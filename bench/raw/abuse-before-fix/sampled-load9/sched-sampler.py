#!/usr/bin/env python3
"""Samples /proc/<pid>/task/*/schedstat (cpu ns, run-queue wait ns) every 2 ms while the process lives."""
import os, sys, time
pid = sys.argv[1]; out = open(sys.argv[2], "w")
names = {}
while os.path.exists(f"/proc/{pid}"):
    t = time.time()
    row = [f"{t:.6f}"]
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task")):
            if tid not in names:
                names[tid] = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            if not names[tid].startswith("wicket-edge") and names[tid] not in ("tokio-runtime-w", "wicket"): continue
            cpu, wait, _ = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()
            row.append(f"{names[tid]}:{tid}:{cpu}:{wait}")
    except (FileNotFoundError, ProcessLookupError):
        break
    out.write(" ".join(row) + "\n")
    time.sleep(0.002)
