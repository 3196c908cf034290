#!/usr/bin/python3
"""Builds of serialcbd side by side on the same stream: CPU per frame of B against A, and against the anchors.

    .ci/abrate.py --a ./serialcbd.old --b ./serialcbd --rate 180 --seconds 20 --repeat 3
    .ci/abrate.py --a ./serialcbd --anchors --rate 180 --seconds 20 --repeat 3

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

--anchors adds the two anchors of the budgets to the same run: `cat` and
the Python gateway (../shared/peers/, SQLite sink), each on a pty pair of
its own, fed the same frames at the same moments; it prints each build's
CPU per frame against theirs, run by run. --b may then be left out.

Needs socat and sqlite3 (the rows are counted, so a build that loses frames
cannot look cheap). Pass --swap to alternate which build is A; the order
of the writes to the ports rotates every frame.
"""

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realrate import cpu_seconds, stop, wait_open  # noqa: E402


def start(kind, work, name, peer):
    """Starts one consumer on a pty pair of its own: kind is a serialcbd
    binary, "cat" or "python". Returns socat, the consumer, the pty end to
    write and the database whose rows to count (None for cat)."""
    d = os.path.join(work, name)
    os.makedirs(d)
    dev, app = os.path.join(d, "dev"), os.path.join(d, "app")
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={dev}", f"pty,raw,echo=0,link={app}"],
                             stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(dev) and os.path.exists(app):
            break
        time.sleep(0.01)
    db = os.path.join(d, "out.db")
    out = None
    if kind == "cat":
        cmd, db, out = ["cat", app], None, subprocess.DEVNULL
    elif kind == "python":
        cmd = ["/usr/bin/python3", peer, "--port", app, "--baud", "115200", "--sink", "sqlite:" + db]
    else:
        cmd = [kind, "run", "--port", "bench=" + app, "--baud", "115200", "--sink", "sqlite:" + db,
               "--state-dir", os.path.join(d, "state"), "--metrics-addr", "", "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL if kind == "python" else None)
    if not wait_open(proc.pid, app):
        sys.exit(f"{kind} did not open its port")
    return socat, proc, dev, db


def run_set(kinds, rate, seconds, peer):
    """Runs the consumers at once on the same frames; returns each one's CPU
    per frame in µs, in the order of kinds."""
    work = tempfile.mkdtemp(prefix="abrate-")
    started = []
    try:
        for i, kind in enumerate(kinds):
            started.append(start(kind, work, f"c{i}", peer))
        time.sleep(1.0)  # the Python gateway flushes the port after opening it
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
            k = i % len(fds)
            for fd in fds[k:] + fds[:k]:
                os.write(fd, line)
        for fd in fds:
            os.close(fd)
        time.sleep(2.0)  # the last batch, fsync and checkpoint
        c1 = [cpu_seconds(p) for p in pids]
        us = [(y - x) / frames * 1e6 for x, y in zip(c0, c1)]
    finally:
        for socat, proc, _, _ in started:
            stop(proc, 30)
            socat.terminate()
            socat.wait()
    rows = []
    for _, _, _, db in started:
        if db is not None:
            with sqlite3.connect(db) as c:
                rows.append(c.execute("select count(*) from frames").fetchone()[0])
    shutil.rmtree(work, ignore_errors=True)
    if any(r != frames for r in rows):
        sys.exit(f"rows stored {rows}, want {frames} each")
    return us


def span(xs):
    return f"{min(xs):.3f}–{max(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="the reference build")
    p.add_argument("--b", help="the build measured against it")
    p.add_argument("--anchors", action="store_true", help="also run cat and the Python gateway on the same frames")
    p.add_argument("--peer", default="../shared/peers/py_asyncio_gateway.py",
                   help="the Python gateway (default: ../shared/peers/, from the repository's root)")
    p.add_argument("--rate", type=float, default=180)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--swap", action="store_true", help="alternate which build starts first")
    args = p.parse_args()
    if args.b is None and not args.anchors:
        p.error("give --b, --anchors or both")
    builds = [("A", args.a)] + ([("B", args.b)] if args.b else [])
    anchors = ["cat", "python"] if args.anchors else []
    ratios = {}
    for i in range(args.repeat):
        order = builds[::-1] if args.swap and i % 2 == 1 else builds
        kinds = [b for _, b in order] + anchors
        us = dict(zip([n for n, _ in order] + anchors, run_set(kinds, args.rate, args.seconds, args.peer)))
        parts = [f"{k} {v:.1f}" for k, v in us.items()]
        pairs = [("B", "A")] if args.b else []
        pairs += [(n, a) for n, _ in builds for a in anchors]
        for x, y in pairs:
            r = us[x] / us[y]
            ratios.setdefault(f"{x}/{y}", []).append(r)
            parts.append(f"{x}/{y} {r:.3f}" if y != "python" else f"{x}/{y} 1/{1 / r:.1f}")
        print(f"run {i + 1}: µs/frame " + ", ".join(parts), flush=True)
    for k, rs in ratios.items():
        if k.endswith("/python"):
            lo, hi = max(rs), min(rs)
            print(f"{args.rate:g} frames/s, {args.seconds:g} s: {k} 1/{1 / lo:.1f}–1/{1 / hi:.1f} ({len(rs)} runs)")
        else:
            print(f"{args.rate:g} frames/s, {args.seconds:g} s: {k} {span(rs)} ({len(rs)} runs)")


if __name__ == "__main__":
    main()
