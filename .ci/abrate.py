#!/usr/bin/python3
"""Two builds of serialcbd side by side on the same stream: CPU per frame of B against A.

    .ci/abrate.py --a ./serialcbd.old --b ./serialcbd --rate 180 --seconds 20 --repeat 3

Both run `serialcbd run` at its defaults (spool on, sync interval, SQLite) on
a socat pty pair of their own, at the same time; one writer sends each frame
to both ports, in alternating order. Each consumer's CPU is its threads' run
time (/proc/PID/task/*/schedstat) over the fixed number of frames, as in
.ci/realrate.py.

Why: on a shared 2-vCPU VM, CPU per frame at 180 frames/s moves by ±20 %
between identical runs one after the other, more than most changes are
worth. Run at the same time, both builds see the same neighbours and the
same cache weather: the same build on both sides gives B/A 1.00 ± 0.02, so
a ratio is worth far more than two absolute figures from `realrate.py`. The
two readers share the machine, so the absolute figures are lower than a
consumer's alone; use `realrate.py` for those, and for the budgets.

Needs socat and sqlite3 (the rows are counted, so a build that loses frames
cannot look cheap). Pass --swap to alternate which build is A.
"""

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realrate import cpu_seconds, wait_open  # noqa: E402


def start(bin_, work, name):
    d = os.path.join(work, name)
    os.makedirs(d)
    dev, app = os.path.join(d, "dev"), os.path.join(d, "app")
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={dev}", f"pty,raw,echo=0,link={app}"],
                             stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(dev) and os.path.exists(app):
            break
        time.sleep(0.01)
    proc = subprocess.Popen([bin_, "run", "--port", "bench=" + app, "--baud", "115200",
                             "--sink", "sqlite:" + os.path.join(d, "out.db"), "--state-dir", os.path.join(d, "state"),
                             "--metrics-addr", "", "--log-level", "warn"])
    if not wait_open(proc.pid, app):
        sys.exit(f"{bin_} did not open its port")
    return socat, proc, dev, os.path.join(d, "out.db")


def run_pair(a, b, rate, seconds):
    work = tempfile.mkdtemp(prefix="abrate-")
    started = []
    try:
        for bin_, name in ((a, "a"), (b, "b")):
            started.append(start(bin_, work, name))
        time.sleep(1.0)
        fds = [os.open(dev, os.O_WRONLY | os.O_NOCTTY) for _, _, dev, _ in started]
        pids = [proc.pid for _, proc, _, _ in started]
        frames = int(rate * seconds)
        line = b"x" * 63 + b"\n"
        c0 = [cpu_seconds(p) for p in pids]
        t0 = time.monotonic()
        for i in range(frames):
            d = t0 + i / rate - time.monotonic()
            if d > 0:
                time.sleep(d)
            for fd in fds if i % 2 == 0 else fds[::-1]:
                os.write(fd, line)
        for fd in fds:
            os.close(fd)
        time.sleep(2.0)  # the last batch, fsync and checkpoint
        c1 = [cpu_seconds(p) for p in pids]
        us = [(y - x) / frames * 1e6 for x, y in zip(c0, c1)]
    finally:
        for socat, proc, _, _ in started:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            socat.terminate()
            socat.wait()
    rows = []
    for _, _, _, db in started:
        with sqlite3.connect(db) as c:
            rows.append(c.execute("select count(*) from frames").fetchone()[0])
    shutil.rmtree(work, ignore_errors=True)
    if rows != [frames, frames]:
        sys.exit(f"rows stored {rows}, want {frames} each")
    return us


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="the reference build")
    p.add_argument("--b", required=True, help="the build measured against it")
    p.add_argument("--rate", type=float, default=180)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--swap", action="store_true", help="alternate which build starts first")
    args = p.parse_args()
    ratios = []
    for i in range(args.repeat):
        swap = args.swap and i % 2 == 1
        x, y = (args.b, args.a) if swap else (args.a, args.b)
        us = run_pair(x, y, args.rate, args.seconds)
        ua, ub = (us[1], us[0]) if swap else (us[0], us[1])
        ratios.append(ub / ua)
        print(f"run {i + 1}: A {ua:.1f} µs/frame, B {ub:.1f} µs/frame, B/A {ub / ua:.3f}", flush=True)
    print(f"{args.rate:g} frames/s, {args.seconds:g} s: B/A {min(ratios):.3f}–{max(ratios):.3f} ({len(ratios)} runs)")


if __name__ == "__main__":
    main()
