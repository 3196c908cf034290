#!/usr/bin/python3
"""Cost per frame at the rates devices send, measured from outside, side by side.

Each consumer reads the same open-loop stream of 64-byte lines through a socat
pty pair, one after the other in the same session:

    cat             a plain reader: the floor of the port path
    serialcbd       `serialcbd run` (its defaults: spool on, sync interval)
    python          ../shared/peers/py_asyncio_gateway.py, the asyncio gateway

For each it prints the consumer's CPU per frame (the threads' run time from
/proc/PID/task/*/schedstat, in ns, over a fixed number of frames, idle tail
included), and with
--strace the fsync/fdatasync and rename calls per second of the measured
window (strace -f -c --seccomp-bpf: only those calls stop the process).
--repeat N runs every consumer N times, interleaved, and prints the range.

    .ci/realrate.py --bin ./serialcbd --rate 180 --seconds 20 --sink sqlite
    .ci/realrate.py --bin ./serialcbd --rate 10 --seconds 30 --sink sqlite --repeat 3
    .ci/realrate.py --bin ./serialcbd --rate 180 --sink http --strace
    .ci/realrate.py --bin ./serialcbd --max 20000 --sink http --only serialcbd,python --repeat 3

--max N writes N frames as fast as the port takes them (4 KiB per write) and
measures frames/s from the first write until the receiver has them all; the
receiver is then .ci/recv204 (a Go server, built with `go build`): Python's
own would be the bottleneck. HTTP sinks only.

Needs socat (and strace for --strace); the Python gateway needs Debian's
python3-serial, python3-aiohttp and python3-aiosqlite (see its README).
"""

import argparse
import http.server
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU time of the process: the sum of its threads' run time in
    nanoseconds from /proc/PID/task/TID/schedstat where the kernel has it
    (utime + stime in /proc/PID/stat are sampled in 10 ms ticks: at 10
    frames/s over 30 s one tick is 33 µs per frame). A thread that exited
    inside the window is missed there; serialcbd's and cat's threads live
    as long as the process."""
    try:
        ns = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except FileNotFoundError:  # the thread exited
                pass
        return ns / 1e9
    except (FileNotFoundError, PermissionError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def context_switches(pid):
    """Voluntary + involuntary context switches of all the process's threads:
    a frame that wakes one thread costs one, as for `cat`."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for ln in f:
                    if ln.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(ln.split()[1])
        except FileNotFoundError:  # the thread exited
            pass
    return n


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers every POST with 204 and counts the lines it received."""

    lines = 0
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n = max(1, body.count(b"\n")) if body.endswith(b"\n") else 1
        with Receiver.lock:
            Receiver.lines += n
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


Receiver.protocol_version = "HTTP/1.1"


def start_receiver():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/ingest"


class GoReceiver:
    """.ci/recv204, built once: counts the records POSTed to it."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.dir = tempfile.mkdtemp(prefix="recv204-")
        exe = os.path.join(self.dir, "recv204")
        subprocess.run(["go", "build", "-o", exe, "./recv204"], cwd=here, check=True)
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.url = self.proc.stdout.readline().decode().strip()

    def count(self):
        import urllib.request
        with urllib.request.urlopen(self.url.rsplit("/", 1)[0] + "/count") as r:
            return int(r.read())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc, timeout):
    """Stops a consumer: SIGTERM, then SIGKILL if it is still there after
    timeout seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_open(pid, path, timeout=10.0):
    """Waits until process pid holds path open."""
    target = os.path.realpath(path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return True
                except OSError:
                    pass
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return False


def consumer_cmd(kind, args, app, work, url):
    sink = url if args.sink.startswith("http") else "sqlite:" + os.path.join(work, "out.db")
    if kind == "cat":
        return ["cat", app], None
    if kind.startswith("cmd:"):  # any reader: cmd:PROGRAM ARGS..., {port} is the port
        return [a.replace("{port}", app) for a in kind[4:].split()], None
    if kind == "serialcbd":
        cmd = [args.bin, "run", "--port", "bench=" + app, "--baud", "115200", "--sink", sink,
               "--state-dir", os.path.join(work, "state"), "--metrics-addr", "", "--log-level", "warn"]
        if args.sink == "http-ndjson":
            cfg = os.path.join(work, "config.yaml")
            with open(cfg, "w") as f:
                f.write(f"state_dir: {work}/state\nports:\n  - {{name: bench, path: {app}, baud: 115200}}\n"
                        f"sinks:\n  - name: s\n    url: {url}\n    http: {{format: ndjson}}\n")
            cmd = [args.bin, "run", "--config", cfg, "--metrics-addr", "", "--log-level", "warn"]
        if not args.spool:
            cmd.append("--spool=false")
        return cmd, None
    if kind == "python":
        if args.sink == "http-ndjson":
            return None, "the Python gateway posts one frame per request"
        return ["/usr/bin/python3", args.peer, "--port", app, "--baud", "115200", "--sink", sink], None
    raise ValueError(kind)


def run_one(kind, args, url):
    work = tempfile.mkdtemp(prefix="realrate-")
    dev, app = os.path.join(work, "dev"), os.path.join(work, "app")
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={dev}", f"pty,raw,echo=0,link={app}"],
                             stderr=subprocess.DEVNULL)
    proc = None
    pid = None
    try:
        for _ in range(200):
            if os.path.exists(dev) and os.path.exists(app):
                break
            time.sleep(0.01)
        cmd, skip = consumer_cmd(kind, args, app, work, url)
        if skip:
            return None, skip
        trace = os.path.join(work, "strace.txt")
        if args.strace:
            cmd = ["strace", "-f", "-ttt", "--seccomp-bpf", "-o", trace, "-e",
                   "trace=fsync,fdatasync,rename,renameat,renameat2"] + cmd
        out = subprocess.DEVNULL if kind == "cat" else None
        proc = subprocess.Popen(cmd, stdout=out)
        pid = proc.pid
        if args.strace:  # measure the traced program, not strace
            for _ in range(200):
                kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
                if kids:
                    pid = int(kids[0])
                    break
                time.sleep(0.01)
        if not wait_open(pid, app):
            return None, f"{kind} did not open the port"
        time.sleep(1.0)  # the Python gateway flushes the port after opening it
        frames = int(args.rate * args.seconds)
        line = b"x" * 63 + b"\n"
        fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY)
        if args.max:
            return run_max(args, pid, fd, line), None
        c0, s0 = cpu_seconds(pid), context_switches(pid)
        w0 = time.time()
        t0 = time.monotonic()
        for i in range(frames):
            due = t0 + i / args.rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            os.write(fd, line)
        os.close(fd)
        time.sleep(args.settle)  # let batching windows and the fsync tick pass
        c1, s1 = cpu_seconds(pid), context_switches(pid)
        w1 = time.time()
        wall = time.monotonic() - t0
        return {"cpu_us_per_frame": (c1 - c0) / frames * 1e6, "core_pct": 100 * (c1 - c0) / wall,
                "cs_per_frame": (s1 - s0) / frames,
                "frames": frames, "wall": wall, "trace": trace if args.strace else None,
                "window": (w0, w1)}, None
    finally:
        if proc is not None:
            if pid is not None and pid != proc.pid:
                try:  # under strace: stop the traced program, strace follows
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            stop(proc, 20)
        socat.terminate()
        socat.wait()
        if proc is not None and args.strace and os.path.exists(os.path.join(work, "strace.txt")):
            args._traces.setdefault(kind, []).append(os.path.join(work, "strace.txt"))
            args._keep = True
        if not args.strace:
            shutil.rmtree(work, ignore_errors=True)


def run_max(args, pid, fd, line):
    """Writes args.max frames as fast as the port takes them and waits until
    the receiver counted them all (or 120 s passed)."""
    base = args._recv.count()
    c0, s0 = cpu_seconds(pid), context_switches(pid)
    t0 = time.monotonic()
    chunk = line * 64
    left = args.max
    while left > 0:
        n = min(left, 64)
        os.write(fd, chunk[: n * len(line)])
        left -= n
    os.close(fd)
    got = 0
    while time.monotonic() - t0 < 120:
        got = args._recv.count() - base
        if got >= args.max:
            break
        time.sleep(0.005)
    wall = time.monotonic() - t0
    c1, s1 = cpu_seconds(pid), context_switches(pid)
    if got < args.max:
        print(f"only {got} of {args.max} frames received after 120 s", file=sys.stderr)
    return {"cpu_us_per_frame": (c1 - c0) / args.max * 1e6, "core_pct": 100 * (c1 - c0) / wall,
            "cs_per_frame": (s1 - s0) / args.max, "frames_per_s": got / wall,
            "frames": args.max, "wall": wall, "trace": None, "window": (0, 0)}


def count_calls(path, w0, w1):
    """Counts the traced calls that started inside [w0, w1] (epoch seconds)."""
    syncs = renames = 0
    for ln in open(path):
        parts = ln.split(None, 2)  # pid, time, call
        if len(parts) < 3 or not parts[1].replace(".", "").isdigit():
            continue
        if not w0 <= float(parts[1]) <= w1:
            continue
        call = parts[2].split("(", 1)[0]
        if call in ("fsync", "fdatasync"):
            syncs += 1
        elif call.startswith("rename"):
            renames += 1
    return syncs, renames


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="serialcbd")
    p.add_argument("--peer", default="../shared/peers/py_asyncio_gateway.py",
                   help="the Python gateway (default: ../shared/peers/, from the repository's root)")
    p.add_argument("--rate", type=float, default=180)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--settle", type=float, default=2.0, help="idle seconds after the last frame, inside the window")
    p.add_argument("--sink", default="sqlite", choices=["sqlite", "http", "http-ndjson"])
    p.add_argument("--spool", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--only", default="cat,serialcbd,python")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--strace", action="store_true")
    p.add_argument("--max", type=int, default=0, help="write this many frames as fast as possible (HTTP sinks)")
    args = p.parse_args()
    args._traces = {}
    if args.max:
        if not args.sink.startswith("http") or args.strace:
            p.error("--max needs --sink http or http-ndjson, without --strace")
        args._recv = GoReceiver()
        srv, url = None, args._recv.url
        args.only = ",".join(k for k in args.only.split(",") if k != "cat")  # cat posts nothing
    else:
        srv, url = start_receiver()
    kinds = args.only.split(",")
    results = {k: [] for k in kinds}
    for r in range(args.repeat):
        for k in kinds:
            res, skip = run_one(k, args, url)
            if skip:
                print(f"{k}: skipped: {skip}", file=sys.stderr)
                continue
            results[k].append(res)
            print(f"run {r + 1} {k:9s} {res['cpu_us_per_frame']:8.1f} µs/frame  {res['core_pct']:6.2f}% of a core"
                  f"  {res['cs_per_frame']:5.2f} context switches/frame"
                  + (f"  {res['frames_per_s']:8.0f} frames/s" if args.max else ""), file=sys.stderr)
    if args.max:
        print(f"\nmax rate, {args.max} frames, sink {args.sink}, spool {'on' if args.spool else 'off'}")
    else:
        print(f"\n{args.rate:g} frames/s, {args.seconds:g} s, sink {args.sink}, spool {'on' if args.spool else 'off'}")
    for k in kinds:
        rs = results[k]
        if not rs:
            continue
        v = sorted(x["cpu_us_per_frame"] for x in rs)
        cs = sorted(x["cs_per_frame"] for x in rs)
        line = f"{k:9s} CPU/frame {v[0]:.0f}–{v[-1]:.0f} µs, context switches/frame {cs[0]:.2f}–{cs[-1]:.2f} ({len(v)} runs)"
        if args.max:
            fps = sorted(x["frames_per_s"] for x in rs)
            line += f"; {fps[0]:.0f}–{fps[-1]:.0f} frames/s"
        for t, res in zip(args._traces.get(k, []), rs):
            w0, w1 = res["window"]
            fs, rn = count_calls(t, w0, w1)
            line += f"; fsync+fdatasync {fs / (w1 - w0):.2f}/s, renames {rn / (w1 - w0):.2f}/s"
            shutil.rmtree(os.path.dirname(t), ignore_errors=True)
        print(line)
    def per_run(a, b):
        ra, rb = results.get(a) or [], results.get(b) or []
        return [x["cpu_us_per_frame"] / y["cpu_us_per_frame"] for x, y in zip(ra, rb) if y["cpu_us_per_frame"] > 0]
    if not args.max:
        if r := per_run("serialcbd", "cat"):
            print(f"serialcbd / cat CPU per frame, run by run: {', '.join(f'{x:.1f}x' for x in r)}")
        if r := per_run("python", "serialcbd"):
            print(f"python / serialcbd CPU per frame, run by run: {', '.join(f'{x:.1f}x' for x in r)}")
    if args.max and "serialcbd" in results and "python" in results and results["serialcbd"] and results["python"]:
        ratios = sorted(a["frames_per_s"] / b["frames_per_s"] for a, b in zip(results["serialcbd"], results["python"]))
        print(f"serialcbd / python frames/s, run by run: {', '.join(f'{r:.1f}x' for r in ratios)}")
    if srv is not None:
        srv.shutdown()
    else:
        args._recv.close()


if __name__ == "__main__":
    main()
