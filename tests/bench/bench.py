#!/usr/bin/env python3
"""postling benchmark harness (issue 8): postling vs Postfix on this machine.

Run by `make bench` (which installs the tools first); writes BENCHMARKS.md at the
repository root. Everything talks to 127.0.0.0/8 only:

    smtp-source ─▶ MTA on 127.0.0.1 ─▶ smtp-sink "MX" on 127.0.0.2
                   (postling finds it through a dnsmasq on 127.0.0.1 with an MX record;
                    Postfix through relayhost = [127.0.0.2]:PORT)

Environment:
    BENCH_PEERS=postfix   also start a private Postfix instance (its own config and
                          queue directory under the work directory; /etc/postfix and
                          the system Postfix are never touched) and compare
    BENCH_RUNS=3          interleaved repetitions of every load (postling, Postfix,
                          postling, Postfix, ...)
    BENCH_SCALE=1.0       multiplies every message count (0.1 for a quick try)
    BENCH_ONLY=a,b        run only these loads (names below); for development
    BENCH_OUT=FILE        where to write the report (default: BENCHMARKS.md at the root)
    BENCH_KEEP=1          keep the work directory (/var/tmp/postling-bench.*)
    CARGO_TARGET_DIR      honoured: the binaries are built and taken from there

Loads: memory, s20, s1, big, sendmail, flush_empty, fsync, flush_queue, size.
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
PEERS = [p for p in os.environ.get("BENCH_PEERS", "").replace(",", " ").split() if p]
ONLY = [p for p in os.environ.get("BENCH_ONLY", "").replace(",", " ").split() if p]
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "BENCHMARKS.md"))
KEEP = os.environ.get("BENCH_KEEP") == "1"
IS_ROOT = os.geteuid() == 0
MUSL = "x86_64-unknown-linux-musl"

SENDER = "bench@example.org"
RCPT = "user@remote.test"


def n(count):
    """A message count scaled by BENCH_SCALE (at least 1)."""
    return max(1, int(round(count * SCALE)))


def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


def wanted(name):
    return not ONLY or name in ONLY


# ---------------------------------------------------------------------------------------
# Small helpers: processes, memory, ports, waiting


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_table():
    """{pid: (ppid, comm)} for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        table[int(d)] = (int(fields[1]), comm)
    return table


def descendants(pid, table=None):
    table = table or proc_table()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, (pp, _) in table.items() if pp == p]
        out += kids
        todo += kids
    return out


def status_kb(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pids):
    """(process count, RSS sum kB, PSS sum kB, RssAnon sum kB) of live pids."""
    pids = [p for p in pids if status_kb(p, "VmRSS")]
    return (
        len(pids),
        sum(status_kb(p, "VmRSS") for p in pids),
        sum(pss_kb(p) for p in pids),
        sum(status_kb(p, "RssAnon") for p in pids),
    )


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid):
    """(own CPU s, reaped children's CPU s, on-CPU s, run-queue wait s, times run) of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        f = stat[stat.rindex(")") + 2 :].split()
        own = (int(f[11]) + int(f[12])) / CLK_TCK
        children = (int(f[13]) + int(f[14])) / CLK_TCK
        run_ns, wait_ns, runs = Path(f"/proc/{pid}/schedstat").read_text().split()
        return own, children, int(run_ns) / 1e9, int(wait_ns) / 1e9, int(runs)
    except (OSError, ValueError, IndexError):
        return None


def cpu_sample(mta):
    """{pid: cpu_times} for the MTA's processes (the main one reaps the others, so its
    children's CPU covers the processes that exited in between)."""
    out = {}
    for pid in mta.pids():
        t = cpu_times(pid)
        if t:
            out[pid] = t
    return out


def cpu_delta(before, after, main):
    """(CPU seconds of every process incl. reaped ones, main's on-CPU s, main's run-queue
    wait s, how many times main was scheduled)."""
    total = 0.0
    for pid, t in after.items():
        own, children = t[:2]
        b_own, b_children = before.get(pid, (0.0, 0.0))[:2]
        total += own - b_own + (children - b_children if pid == main else 0)
    m_after, m_before = after.get(main), before.get(main)
    if not m_after or not m_before:
        return total, None, None, None
    return total, m_after[2] - m_before[2], m_after[3] - m_before[3], m_after[4] - m_before[4]


def free_port(host="127.0.0.1", also=(), udp=False):
    """A TCP port free on host (and on the hosts in `also`; UDP too when udp)."""
    for _ in range(200):
        s = socket.socket()
        s.bind((host, 0))
        port = s.getsockname()[1]
        held = [s]
        ok = True
        for h in also:
            t = socket.socket()
            try:
                t.bind((h, port))
                held.append(t)
            except OSError:
                ok = False
        if udp:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind((host, port))
                held.append(u)
            except OSError:
                ok = False
        for h in held:
            h.close()
        if ok:
            return port
    raise RuntimeError("no free port")


def wait_until(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def can_connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def stop_pid(proc, sig=signal.SIGTERM, timeout=20):
    """Stop a child we started (by its pid), escalating to SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stats(values):
    """(median, min, max) or None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def pctl(values, p):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------
# Peers: dnsmasq, smtp-sink


class Dns:
    """dnsmasq on 127.0.0.1:PORT: remote.test MX 10 mx.remote.test = 127.0.0.2."""

    def __init__(self):
        self.port = free_port(udp=True)
        self.cmd = [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", f"--port={self.port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--local=/test/", "--pid-file=",
            "--mx-host=remote.test,mx.remote.test,10",
            "--host-record=mx.remote.test,127.0.0.2",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        if not wait_until(lambda: can_connect("127.0.0.1", self.port), 10):
            raise RuntimeError("dnsmasq did not start: " + " ".join(self.cmd))

    def stop(self):
        stop_pid(self.proc)


class Sink:
    """smtp-sink on 127.0.0.2:PORT with -c; counts messages from its output."""

    def __init__(self, port):
        self.port = port
        self.cmd = ["smtp-sink"] + (["-u", "nobody"] if IS_ROOT else [])
        self.cmd += ["-c", f"127.0.0.2:{port}", "1000"]
        self.count = 0
        self.target = None
        self.reached = None  # monotonic time the target was reached
        self.on_reached = None  # called (in the reader thread) when it is
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        if not wait_until(lambda: can_connect("127.0.0.2", port), 10):
            raise RuntimeError("smtp-sink did not start")

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for part in reversed(done):
                m = re.search(rb"mesg=(\d+)", part)
                if m:
                    with self.lock:
                        self.count = int(m.group(1))
                        if self.target and self.reached is None and self.count >= self.target:
                            self.reached = time.monotonic()
                            if self.on_reached:
                                self.on_reached()
                    break

    def expect(self, target):
        """Record the time the count reaches the current count + target."""
        with self.lock:
            self.target = self.count + target
            self.reached = None

    def wait(self, timeout):
        """Monotonic time the expected count was reached, or None on timeout."""
        wait_until(lambda: self.reached is not None, timeout, 0.01)
        return self.reached

    def stop(self):
        stop_pid(self.proc)


# ---------------------------------------------------------------------------------------
# The MTAs


class Postling:
    def __init__(self, work, binary, dns_port, sink_port, name="postling"):
        self.name = name
        self.bin = binary
        self.dir = work / name.replace(" ", "-").replace("(", "").replace(")", "")
        self.spool = self.dir / "spool"
        self.port = free_port()
        for d in ("spool", "mail/postmaster", "bin"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        (self.dir / "aliases").write_text("root: postmaster\n")
        self.config = self.dir / "postling.conf"
        self.config.write_text(
            f"""hostname = postling.bench
spool = {self.spool}
listen = 127.0.0.1:{self.port} smtp
local_domains = postling.bench
mail_dir = {self.dir}/mail
aliases = {self.dir}/aliases
dns = 127.0.0.1:{dns_port}
smtp_port = {sink_port}
outbound_tls = none
max_connections = 300
max_connections_per_ip = 300
"""
        )
        self.sendmail = self.dir / "bin" / "sendmail"
        if not self.sendmail.exists():
            self.sendmail.symlink_to(self.bin)
        self.env = dict(os.environ, POSTLING_CONFIG=str(self.config), RUST_LOG="info")
        self.proc = None
        self.logf = None

    def version(self):
        return run([self.bin, "--version"]).strip()

    def start(self):
        self.logf = open(self.dir / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "-c", self.config], stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=self.logf, env=self.env,
            # its own session, as a daemon under init: its own autogroup for the scheduler
            start_new_session=True,
        )  # fmt: skip
        if not wait_until(lambda: can_connect("127.0.0.1", self.port), 15):
            raise RuntimeError(f"postling serve did not start; see {self.dir}/serve.log")
        self.settle()

    def stop(self):
        stop_pid(self.proc)
        self.proc = None

    def main_pid(self):
        return self.proc.pid

    def pids(self):
        return [self.proc.pid] + descendants(self.proc.pid)

    def smtpd_pids(self):
        """The processes that hold SMTP sessions: serve itself."""
        return [self.proc.pid]

    def queued(self):
        """Messages in the queue (env/) and in the maildrop."""
        total = 0
        for d in ("env", "maildrop"):
            try:
                total += sum(1 for e in os.scandir(self.spool / d) if not e.name.startswith("."))
            except FileNotFoundError:
                pass
        return total

    def busy(self):
        """A delivery pass is running."""
        return len(self.pids()) > 1

    def settle(self, timeout=120):
        """Wait for an empty queue and no delivery pass running."""
        return wait_until(lambda: self.queued() == 0 and not self.busy(), timeout, 0.1)

    def sendmail_cmd(self):
        return [str(self.sendmail), "-t"]

    def flush_cmd(self):
        return [str(self.bin), "flush", "-c", str(self.config)]


class Postfix:
    name = "Postfix"

    def __init__(self, work, sink_port):
        self.dir = work / "postfix"
        self.etc = self.dir / "etc"
        self.queue = self.dir / "queue"
        self.port = free_port()
        self.etc.mkdir(parents=True, exist_ok=True)
        self.queue.mkdir(exist_ok=True)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix")
        (self.etc / "main.cf").write_text(
            f"""# postling bench: a private Postfix instance (postfix -c {self.etc})
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydomain = postfix.bench
myorigin = $myhostname
mydestination = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.2]:{sink_port}
# Loopback only, as postling: no DNS at all (postling does no reverse lookups either).
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
biff = no
maillog_file = {self.dir}/postfix.log
"""
        )
        # Debian's master.cf services, without chroot (no copies of /etc files needed);
        # smtpd may run 300 processes for the 200 idle clients.
        (self.etc / "master.cf").write_text(
            f"""127.0.0.1:{self.port} inet n - n - 300 smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
        )
        self.env = dict(os.environ, MAIL_CONFIG=str(self.etc))
        self.master = None
        run(["postfix", "-c", str(self.etc), "check"], env=self.env)

    def version(self):
        return "Postfix " + run(["postconf", "-c", str(self.etc), "-h", "mail_version"]).strip()

    def start(self):
        subprocess.run(["postfix", "-c", str(self.etc), "start"], env=self.env, check=True,
                       capture_output=True)  # fmt: skip
        pidfile = self.queue / "pid" / "master.pid"
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10)
        self.master = int(pidfile.read_text().strip())
        if not wait_until(lambda: can_connect("127.0.0.1", self.port), 15):
            raise RuntimeError(f"Postfix did not start; see {self.dir}/postfix.log")
        self.settle()

    def stop(self):
        if self.master is None:
            return
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], env=self.env,
                       capture_output=True)  # fmt: skip
        master = self.master
        if not wait_until(lambda: not Path(f"/proc/{master}").exists()
                          or master not in proc_table(), 30):  # fmt: skip
            subprocess.run(["postfix", "-c", str(self.etc), "abort"], env=self.env,
                           capture_output=True)  # fmt: skip
        self.master = None

    def main_pid(self):
        return self.master

    def pids(self):
        return [self.master] + descendants(self.master)

    def smtpd_pids(self):
        table = proc_table()
        return [p for p in descendants(self.master, table) if table[p][1] == "smtpd"]

    def queued(self):
        total = 0
        for d in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(self.queue / d):
                total += len(files)
        return total

    def deferred(self):
        return sum(len(f) for _, _, f in os.walk(self.queue / "deferred"))

    def settle(self, timeout=120):
        return wait_until(lambda: self.queued() == 0, timeout, 0.1)

    def sendmail_cmd(self):
        return ["/usr/sbin/sendmail", "-C", str(self.etc), "-t"]

    def flush_cmd(self):
        return ["postqueue", "-c", str(self.etc), "-f"]


# ---------------------------------------------------------------------------------------
# Loads


def smtp_source(args, port):
    cmd = ["smtp-source"] + args + ["-f", SENDER, "-t", RCPT, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True)
    return t0, time.monotonic() - t0, p


class Bench:
    def __init__(self, work):
        self.work = work
        self.results = {}  # load -> mta name -> list of per-run values
        self.runs = []  # detail rows: (load, mta, run, value text, loadavg)
        self.notes = []
        self.commands = {}
        self.extra = {}

    def record(self, load, mta, run_no, value, text, la):
        self.results.setdefault(load, {}).setdefault(mta.name, []).append(value)
        self.runs.append((load, mta.name, run_no, text, la))
        log(f"{load} run {run_no} {mta.name}: {text} (load {la})")

    # -- throughput ------------------------------------------------------------------

    def throughput(self, load, mtas, sink, sessions, messages, size=4096):
        args = ["-s", str(sessions), "-m", str(messages), "-l", str(size)]
        self.commands[load] = "smtp-source " + " ".join(args) + f" -f {SENDER} -t {RCPT} 127.0.0.1:PORT"
        for r in range(1, RUNS + 1):
            for mta in mtas:
                if not mta.settle():
                    self.notes.append(f"{load}: {mta.name}'s queue was not empty before run {r}")
                la = loadavg()
                sink.expect(messages)
                c0 = cpu_sample(mta)
                t0, accept, p = smtp_source(args, mta.port)
                c1 = cpu_sample(mta)
                done = sink.wait(max(120, messages / 20))
                if p.returncode != 0:
                    self.notes.append(
                        f"{load} run {r} {mta.name}: smtp-source exited {p.returncode}: "
                        + (p.stderr.strip().splitlines() or [""])[-1]
                    )
                e2e = (done - t0) if done else None
                acc_rate = messages / accept
                e2e_rate = messages / e2e if e2e else None
                self.put(load + "_e2e", mta.name, e2e_rate)
                mta.settle()
                c2 = cpu_sample(mta)
                _, main_cpu, main_wait, main_runs = cpu_delta(c0, c1, mta.main_pid())
                total_cpu = cpu_delta(c0, c2, mta.main_pid())[0]
                self.put(load + "_cpu", mta.name, total_cpu / messages * 1000)
                cpu_text = f"; CPU {total_cpu / messages * 1000:.2f} ms per message (all processes)"
                if isinstance(mta, Postling) and main_wait is not None:
                    self.put(load + "_oncpu", mta.name, main_cpu / accept * 100)
                    self.put(load + "_wait", mta.name, main_wait / accept * 100)
                    if main_runs:
                        self.put(load + "_wait_each", mta.name, main_wait / main_runs * 1000)
                        self.put(load + "_runs_per_msg", mta.name, main_runs / messages)
                    cpu_text += (f"; while accepting, serve was on a CPU {main_cpu:.2f} s and waiting "
                                 f"for one {main_wait:.2f} s")  # fmt: skip
                self.record(
                    load, mta, r, acc_rate,
                    f"accepted {messages} in {accept:.2f} s = {acc_rate:.0f} msg/s; "
                    + (f"all at the sink after {e2e:.2f} s = {e2e_rate:.0f} msg/s"
                       if e2e else "NOT all at the sink (timeout)")
                    + cpu_text,
                    la,
                )  # fmt: skip

    def big_message(self, mtas, sink, per_run=5):
        size = 1024 * 1024
        args = ["-s", "1", "-m", "1", "-l", str(size)]
        self.commands["big"] = (
            "smtp-source " + " ".join(args) + f" -f {SENDER} -t {RCPT} 127.0.0.1:PORT"
            f" ({per_run} times in a row per run; the median per run)"
        )
        for r in range(1, RUNS + 1):
            for mta in mtas:
                mta.settle()
                la = loadavg()
                times = []
                for _ in range(per_run):
                    sink.expect(1)
                    _, t, p = smtp_source(args, mta.port)
                    if p.returncode != 0:
                        self.notes.append(f"big run {r} {mta.name}: smtp-source exited {p.returncode}")
                    times.append(t * 1000)
                    sink.wait(30)
                med = statistics.median(times)
                self.record("big", mta, r, med,
                            f"median {med:.1f} ms (min {min(times):.1f}, max {max(times):.1f})", la)  # fmt: skip

    # -- memory ----------------------------------------------------------------------

    def idle_clients(self, mta, count=200):
        """Open `count` sessions, EHLO on each; returns (procs, rss, pss) of the MTA and
        (procs, rss, pss) of its SMTP-session processes, with the sessions idle."""
        socks = []
        try:
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", mta.port), timeout=30)
                f = s.makefile("rb")
                line = f.readline()
                while line[3:4] == b"-":
                    line = f.readline()
                if not line.startswith(b"220"):
                    raise RuntimeError(f"{mta.name}: banner {line!r}")
                s.sendall(b"EHLO bench.example.org\r\n")
                line = f.readline()
                while line[3:4] == b"-":
                    line = f.readline()
                if not line.startswith(b"250"):
                    raise RuntimeError(f"{mta.name}: EHLO {line!r}")
                socks.append((s, f))
            time.sleep(1)
            return memory(mta.pids()), memory(mta.smtpd_pids())
        finally:
            for s, f in socks:
                try:
                    s.sendall(b"QUIT\r\n")
                except OSError:
                    pass
                f.close()
                s.close()

    def put(self, load, name, value):
        self.results.setdefault(load, {}).setdefault(name, []).append(value)

    def memory(self, mtas):
        self.commands["idle"] = (
            "2 s after start with an empty queue: VmRSS and RssAnon from /proc/PID/status, "
            "Pss from /proc/PID/smaps_rollup, summed over the MTA's processes"
        )
        self.commands["clients200"] = (
            "200 TCP connections to the MTA, each reads the banner and sends `EHLO bench.example.org` "
            "(and reads the reply), then all stay idle; 1 s later the same sums"
        )
        for r in range(1, RUNS + 1):
            for mta in mtas:
                mta.start()
                time.sleep(2)
                la = loadavg()
                procs, rss, pss, anon = memory(mta.pids())
                self.put("idle_procs", mta.name, procs)
                self.put("idle_pss", mta.name, pss)
                self.put("idle_anon", mta.name, anon)
                self.record("idle", mta, r, rss,
                            f"{procs} process(es), RSS {rss} kB (anonymous {anon} kB), PSS {pss} kB", la)  # fmt: skip
                la = loadavg()
                (procs, rss, pss, anon), (sprocs, srss, spss, sanon) = self.idle_clients(mta)
                self.put("clients200_procs", mta.name, procs)
                self.put("clients200_pss", mta.name, pss)
                self.put("clients200_anon", mta.name, anon)
                self.put("clients200_smtpd", mta.name, srss)
                self.record(
                    "clients200", mta, r, rss,
                    f"all: {procs} process(es), RSS {rss} kB (anonymous {anon} kB), PSS {pss} kB; "
                    f"session processes: {sprocs}, RSS {srss} kB",
                    la,
                )  # fmt: skip
                mta.stop()

    # -- sendmail, flush ---------------------------------------------------------------

    def sendmail(self, mtas, sink, count):
        self.commands["sendmail"] = (
            f"{count} × `sendmail -t` in a row per run, each timed from spawn to exit "
            "(postling: its `sendmail` symlink with POSTLING_CONFIG; Postfix: "
            "/usr/sbin/sendmail -C ETC -t); message: To: user@remote.test, Subject, one body line"
        )
        all_times = {}
        for mta in mtas:
            # 20 more submissions under strace: their fsyncs, and the time spent in them.
            if not shutil.which("strace"):
                break
            mta.settle()
            counts, secs = [], []
            sink.expect(20)
            for i in range(20):
                out = self.work / f"strace-sendmail-{mta.name}.txt"
                msg = f"To: {RCPT}\nSubject: bench strace {i}\n\nhello from sendmail -t\n".encode()
                subprocess.run(["strace", "-f", "-qq", "-T", "-e", "trace=fsync,fdatasync,sync_file_range",
                                "-o", str(out)] + mta.sendmail_cmd(), input=msg,
                               env=getattr(mta, "env", None), capture_output=True)  # fmt: skip
                lines = out.read_text().splitlines()
                counts.append(sum(1 for l in lines if re.match(r"\d+\s+(fsync|fdatasync|sync_file_range)\(", l)))
                secs.append(sum(float(t) for t in re.findall(r"<(\d+\.\d+)>$", "\n".join(lines), re.M)))
            self.extra.setdefault("sendmail_fsync", {})[mta.name] = (
                statistics.median(counts), statistics.median(secs) * 1000)
            sink.wait(60)
        for r in range(1, RUNS + 1):
            # The floor: spawning postling and waiting for it, the same way, doing nothing.
            floor = []
            for _ in range(100):
                t0 = time.perf_counter()
                subprocess.run([str(mtas[0].bin), "--version"], stdout=subprocess.DEVNULL)
                floor.append((time.perf_counter() - t0) * 1000)
            self.put("spawn_floor", "postling", statistics.median(floor))
            for mta in mtas:
                mta.settle()
                la = loadavg()
                sink.expect(count)
                times = []
                env = getattr(mta, "env", None)
                for i in range(count):
                    msg = f"To: {RCPT}\nSubject: bench {r}.{i}\n\nhello from sendmail -t\n".encode()
                    t0 = time.perf_counter()
                    p = subprocess.run(mta.sendmail_cmd(), input=msg, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
                    times.append((time.perf_counter() - t0) * 1000)
                    if p.returncode != 0:
                        self.notes.append(f"sendmail run {r} {mta.name}: exit {p.returncode}: {p.stderr.decode().strip()}")
                        break
                all_times.setdefault(mta.name, []).extend(times)
                med, p90 = statistics.median(times), pctl(times, 0.9)
                self.results.setdefault("sendmail_p90", {}).setdefault(mta.name, []).append(p90)
                self.record("sendmail", mta, r, med, f"median {med:.2f} ms, p90 {p90:.2f} ms", la)
                if sink.wait(120) is None:
                    self.notes.append(f"sendmail run {r} {mta.name}: not every message reached the sink")
                mta.settle()
        self.extra["sendmail_all"] = {
            k: (statistics.median(v), pctl(v, 0.9), len(v)) for k, v in all_times.items()
        }

    def flush_empty(self, mtas, count=100):
        self.commands["flush_empty"] = (
            f"{count} × in a row per run, empty queue, daemon running: "
            "`postling flush -c CONF` (a whole pass in the process) vs `postqueue -c ETC -f` "
            "(only asks the running qmgr to scan)"
        )
        for r in range(1, RUNS + 1):
            for mta in mtas:
                mta.settle()
                la = loadavg()
                times = []
                for _ in range(count):
                    t0 = time.perf_counter()
                    p = subprocess.run(mta.flush_cmd(), env=getattr(mta, "env", None),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                    times.append((time.perf_counter() - t0) * 1000)
                    if p.returncode != 0:
                        self.notes.append(f"flush_empty run {r} {mta.name}: exit {p.returncode}")
                        break
                med = statistics.median(times)
                self.results.setdefault("flush_empty_p90", {}).setdefault(mta.name, []).append(pctl(times, 0.9))
                self.record("flush_empty", mta, r, med,
                            f"median {med:.2f} ms, p90 {pctl(times, .9):.2f} ms, max {max(times):.2f} ms", la)  # fmt: skip

    def flush_queue(self, mtas, sink_port, count, runs):
        """`count` messages queued for one destination while its MX is down, then the MX
        comes up and one flush delivers them all."""
        self.commands["flush_queue"] = (
            f"with the sink down, `smtp-source -s 20 -m {count} -l 4096 …` into the MTA; wait until "
            f"all {count} are queued and deferred (no delivery running). postling: stop serve, "
            "start the sink, run `postling flush -c CONF`: done when it exits (queue empty). "
            "Postfix (running): start the sink, `postqueue -c ETC -f`: done when the queue "
            f"directories are empty. {runs} run(s): the slowest load, kept to fit the time budget"
        )
        for r in range(1, runs + 1):
            for mta in mtas:
                mta.settle()
                t0, accept, p = smtp_source(["-s", "20", "-m", str(count), "-l", "4096"], mta.port)
                if p.returncode != 0:
                    self.notes.append(f"flush_queue run {r} {mta.name}: smtp-source exited {p.returncode}")
                if isinstance(mta, Postling):
                    ok = wait_until(lambda: mta.queued() >= count and not mta.busy(), 900, 0.5)
                    mta.stop()
                else:
                    ok = wait_until(lambda: mta.deferred() >= count, 900, 0.5)
                queued = time.monotonic() - t0
                if not ok:
                    self.notes.append(f"flush_queue run {r} {mta.name}: only {mta.queued()} queued")
                log(f"flush_queue {mta.name}: {count} accepted in {accept:.1f} s, all deferred after {queued:.1f} s")
                time.sleep(1)
                sink = Sink(sink_port)
                try:
                    sink.expect(count)
                    la = loadavg()
                    flush_log = self.work / f"flush-queue-{mta.name}-{r}.log"
                    if isinstance(mta, Postling):
                        # How many outcomes the flush had logged (each is logged just before
                        # its envelope is written) when the MX had every message.
                        def logged_at_sink(path=flush_log, name=mta.name):
                            try:
                                sent = path.read_text().count("status=sent")
                            except OSError:
                                sent = None
                            self.put("flush_queue_logged", name, sent)

                        sink.on_reached = logged_at_sink
                    t0 = time.monotonic()
                    with open(flush_log, "wb") as err:
                        p = subprocess.run(mta.flush_cmd(), env=getattr(mta, "env", None),
                                           stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
                    exited = time.monotonic() - t0
                    if p.returncode != 0:
                        self.notes.append(f"flush_queue run {r} {mta.name}: flush exit {p.returncode}")
                    at_sink = sink.wait(900)
                    at_sink = (at_sink - t0) if at_sink else None
                    wait_until(lambda: mta.queued() == 0, 900, 0.2)
                    empty = time.monotonic() - t0
                    if mta.queued():
                        empty = None
                    self.put("flush_queue_sink", mta.name, at_sink)
                    self.record(
                        "flush_queue", mta, r, empty,
                        (f"queue empty after {empty:.2f} s = {count / empty:.0f} msg/s" if empty
                         else "queue NOT empty (timeout)")
                        + (f"; all {count} at the sink after {at_sink:.2f} s" if at_sink
                           else f"; only {sink.count} at the sink")
                        + f"; the flush command exited after {exited:.3f} s"
                        + f" (queueing: accepted in {accept:.1f} s, all deferred after {queued:.1f} s)",
                        la,
                    )  # fmt: skip
                    if isinstance(mta, Postling):
                        mta.start()
                finally:
                    sink.stop()

    # -- fsyncs ------------------------------------------------------------------------

    def fsyncs(self, mtas, sink, messages):
        self.commands["fsync"] = (
            "strace -f -qq -T -e trace=fsync,fdatasync,sync_file_range -o FILE -p PID... "
            f"(postling: serve; Postfix: master and all its processes) during "
            f"`smtp-source -s 20 -m {messages} -l 4096 …` until the sink has all and the queue is empty; "
            "calls (and their time, -T) counted per process: the calls `strace -c -f` totals; divided by messages"
        )
        if not shutil.which("strace"):
            self.notes.append("fsync: strace is not installed; skipped")
            return
        for mta in mtas:
            mta.settle()
            out = self.work / f"strace-{mta.name}.txt"
            pids = mta.pids()
            cmd = ["strace", "-f", "-qq", "-T", "-e", "trace=fsync,fdatasync,sync_file_range", "-o", str(out)]
            for p in pids:
                cmd += ["-p", str(p)]
            st = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
            sink.expect(messages)
            _, accept, p = smtp_source(["-s", "20", "-m", str(messages), "-l", "4096"], mta.port)
            sink.wait(300)
            mta.settle()
            time.sleep(0.5)
            stop_pid(st, signal.SIGINT)
            per_pid, secs = {}, {}
            for line in out.read_text().splitlines():
                m = re.match(r"(\d+)\s+(?:(fsync|fdatasync|sync_file_range)\(|<\.\.\. \w+ resumed>)", line)
                if not m:
                    continue
                pid = int(m.group(1))
                if m.group(2):
                    per_pid[pid] = per_pid.get(pid, 0) + 1
                t = re.search(r"<(\d+\.\d+)>$", line)
                if t:
                    secs[pid] = secs.get(pid, 0.0) + float(t.group(1))
            total = sum(per_pid.values())
            main = per_pid.get(mta.main_pid(), 0)
            self.extra.setdefault("fsync", {})[mta.name] = {
                "messages": messages,
                "total": total,
                "main": main,
                "others": total - main,
                "processes": len(per_pid),
                "accept_s": accept,
                "main_s": secs.get(mta.main_pid(), 0.0),
                "total_s": sum(secs.values()),
            }
            log(f"fsync {mta.name}: {total} calls for {messages} messages "
                f"({total / messages:.2f}/msg; main process {main})")  # fmt: skip

    def analysis(self, has_pf):
        """Sentences explaining the numbers, computed from this run."""
        out = []
        R = self.results

        def med(load, name="postling"):
            s = stats(R.get(load, {}).get(name, []))
            return s[0] if s else None

        f = self.extra.get("fsync", {}).get("postling")
        if f and f["main"]:
            per_msg = f["main"] / f["messages"]
            avg = f["main_s"] / f["main"] * 1000
            fsync_pct = f["main_s"] / f["accept_s"] * 100
            text = (
                f"**Acceptance.** serve does everything in one thread: it parses every session and "
                f"makes {per_msg:.0f} fsyncs per message before its `250`, one after the other, so each "
                f"session also waits for the others' fsyncs. Under strace (20 sessions) those fsyncs "
                f"took {avg:.2f} ms each on average, {per_msg * avg:.1f} ms per message: "
                f"{fsync_pct:.0f}% of the run; alone they would cap acceptance near "
                f"{1000 / (per_msg * avg):,.0f} msgs/s."
            )
            oncpu, wait = med("s20_oncpu"), med("s20_wait")
            if oncpu is not None and wait is not None:
                text += (
                    f" Without strace, serve was on a CPU {oncpu:.0f}% of the 20-session runs and "
                    f"**runnable but waiting for a CPU {wait:.0f}%** of them"
                )
                w1 = med("s1_wait")
                if w1 is not None:
                    text += f" ({w1:.0f}% with one session)"
                text += (
                    ": the other jobs on this 2-core machine keep both cores busy, and serve "
                    "sleeps and wakes many times per message (a command arrives, an fsync "
                )
                each, per = med("s20_wait_each"), med("s20_runs_per_msg")
                if each is not None and per is not None:
                    text += f"completes: {per:.0f} times per message"
                else:
                    text += "completes"
                text += "), each time queueing behind them for a CPU"
                if each is not None:
                    text += f" ({each:.2f} ms on average)"
                text += (
                    ". In one thread these waits add up one after the other; Postfix's happen in "
                    "the 20 sessions' own processes (smtpd and cleanup per session) at the same "
                    "time, so they overlap."
                )
                if wait >= 30:
                    text += (
                        " So on this machine the accept rate is bound first by these serial waits "
                        "for a CPU, then by the serial fsyncs; on an idle machine only the fsyncs "
                        "would remain."
                    )
            cpu_pl, cpu_pf = med("s20_cpu"), med("s20_cpu", "Postfix")
            if cpu_pl and cpu_pf:
                text += (
                    f" Per message postling used {cpu_pl:.2f} ms of CPU in all (accepting and "
                    f"delivering), Postfix {cpu_pf:.2f} ms"
                )
                text += (
                    f": postling does {cpu_pf / cpu_pl:.1f}× less work, so what it lacks is "
                    "parallelism (serial waiting), not efficiency."
                    if cpu_pl < cpu_pf else "."
                )
            pf = self.extra.get("fsync", {}).get("Postfix")
            if has_pf and pf:
                text += (
                    f" Postfix makes {pf['total'] / pf['messages']:.0f} fsync per message, each in "
                    "the cleanup process of its session, so with 20 sessions many are in flight "
                    "at once and ext4 commits them together."
                )
            text += (
                " What would lift postling: fewer fsyncs per message (one file for message and "
                "envelope; one directory fsync for several messages) and group commit (the "
                "messages of several sessions made durable by one round of fsyncs, off the "
                "event-loop thread)."
            )
            out.append(text)
            if f["others"]:
                out.append(
                    f"Delivery adds {f['others'] / f['messages']:.1f} fsyncs per message in the passes: "
                    "the outcome is recorded (envelope file rewritten, then its directory synced) "
                    "and then the message is removed (directory synced again). They compete for the "
                    "same disk while mail is being accepted."
                )
        if "fsync_latency" in self.extra:
            fl, dl = self.extra["fsync_latency"]
            out.append(
                f"On this disk a file fsync costs {fl:.1f} ms and a directory fsync {dl:.1f} ms "
                "(median, measured before the loads; it varies with the other jobs' I/O)."
            )
        sm = self.extra.get("sendmail_fsync", {})
        if sm.get("postling") is not None:
            n_pl, t_pl = sm["postling"]
            text = (
                f"One postling `sendmail -t` makes {n_pl:.0f} fsync calls (maildrop file, then its "
                f"directory), {t_pl:.2f} ms in them (median of 20 under `strace -T`)"
            )
            if sm.get("Postfix") is not None:
                n_pf, t_pf = sm["Postfix"]
                text += f"; Postfix's sendmail + postdrop make {n_pf:.0f}, {t_pf:.2f} ms"
            text += "."
            pl, pf, floor = med("sendmail"), med("sendmail", "Postfix"), med("spawn_floor")
            if pl and pf:
                text += f" A fifth of Postfix's {pf:.2f} ms median is {pf / 5:.2f} ms; postling takes {pl:.2f} ms"
                if floor:
                    text += (
                        f", of which {floor:.2f} ms is spawning a postling process and waiting for it "
                        "(`postling --version`, timed the same way)"
                    )
                text += (
                    ", and the rest is reading the configuration and the message, writing the "
                    "maildrop file, its fsyncs (single calls vary from a fraction of a millisecond "
                    "to several on this shared disk) and waits for a CPU."
                )
            out.append(text)
        if med("idle") and med("idle_anon"):
            text = (
                f"Idle RSS is mostly file-backed pages: only {med('idle_anon'):,.0f} kB of "
                f"{med('idle'):,.0f} kB is anonymous memory; the rest is the mapped binary and, for "
                "the glibc build, libc (shared with every other process that maps them)"
            )
            mu = med("idle", "postling (musl)")
            if mu:
                text += f"; the static musl build idles at {mu:,.0f} kB"
            out.append(text + ".")
        fq, fqs = med("flush_queue"), med("flush_queue_sink")
        if fq and fqs and fq > 2 * fqs:
            text = (
                f"`postling flush` had every message at the sink after {fqs:.1f} s but needed "
                f"{fq:.1f} s to finish: the connection streams the messages while the main thread "
                "records each outcome (envelope rewritten + directory fsync) and finally removes "
                "each message (directory fsync), one message after the other (Postfix deletes "
                "its delivered queue files without any fsync: see the counts above)."
            )
            logged = med("flush_queue_logged")
            count = self.extra.get("flush_queue_count")
            if logged is not None and count:
                text += (
                    f" **When the MX had all {count:,} messages, the flush had logged (and so at "
                    f"most recorded) {logged:,.0f} outcomes**: a crash or `kill -9` at that moment "
                    f"would leave at least the other {count - logged:,.0f} to be delivered a second time by the next pass, "
                    "not just the message in flight."
                )
            out.append(text)
        return out

    def fsync_latency(self, count=200):
        """The disk's cost: write 4 KiB + fsync a new file, and fsync its directory."""
        d = Path(tempfile.mkdtemp(dir=self.work))
        files, dirs = [], []
        fd_dir = os.open(d, os.O_RDONLY)
        for i in range(count):
            t0 = time.perf_counter()
            fd = os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            os.close(fd)
            t1 = time.perf_counter()
            os.fsync(fd_dir)
            t2 = time.perf_counter()
            files.append((t1 - t0) * 1000)
            dirs.append((t2 - t1) * 1000)
        os.close(fd_dir)
        shutil.rmtree(d)
        self.extra["fsync_latency"] = (statistics.median(files), statistics.median(dirs))


# ---------------------------------------------------------------------------------------
# Building, facts, report


def cargo_target_dir():
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))
    return Path(meta["target_directory"])


def build():
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    target = cargo_target_dir()
    return target / "release" / "postling"


def build_static():
    log(f"cargo build --release --target {MUSL} (make static)")
    p = subprocess.run(["cargo", "build", "--release", "--quiet", "--target", MUSL], cwd=ROOT)
    if p.returncode != 0:
        return None
    path = cargo_target_dir() / MUSL / "release" / "postling"
    return path


def facts(work):
    f = {}
    cpu = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
           if l.startswith("model name")]  # fmt: skip
    f["cpu"] = f"{cpu[0] if cpu else '?'} × {os.cpu_count()}"
    mem = status_kb_file("/proc/meminfo", "MemTotal")
    f["memory"] = f"{mem // 1024} MiB"
    f["kernel"] = os.uname().release
    try:
        f["os"] = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        f["os"] = "?"
    df = run(["df", "-T", str(work)]).splitlines()[-1].split()
    f["filesystem"] = f"{df[1]} on {df[0]} ({work})"
    f["rustc"] = run(["rustc", "--version"]).strip()
    f["commit"] = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip()
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]).strip()
    if dirty:
        f["commit"] += " (with uncommitted changes to src/)"
    for pkg in ("postfix", "dnsmasq-base", "strace"):
        p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        f[pkg] = p.stdout.strip() or "not installed"
    return f


def status_kb_file(path, key):
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def fmt_stats(values, f):
    s = stats(values)
    if s is None:
        return "—"
    med, lo, hi = s
    if len([v for v in values if v is not None]) == 1 or lo == hi:
        return f(med)
    return f"{f(med)} ({f(lo)}–{f(hi)})"


def clean(text):
    return re.sub(r"/var/tmp/postling-bench\.[A-Za-z0-9_]+", "WORK", text)


def report(b, fx, versions, sizes, started, finished, mtas, elapsed):
    R = b.results
    names = [m.name for m in mtas]
    has_pf = "Postfix" in names

    def vals(load, name="postling"):
        return R.get(load, {}).get(name, [])

    def med(load, name="postling"):
        s = stats(vals(load, name))
        return s[0] if s else None

    def ratio(load, kind, who="postling"):
        """How many times better postling is: rates divide, times and sizes invert."""
        a, c = med(load, who), med(load, "Postfix")
        if not a or not c:
            return None
        return a / c if kind == "rate" else c / a

    def pair_ratios(load, kind, who="postling"):
        out = []
        for x, y in zip(vals(load, who), vals(load, "Postfix")):
            if x and y:
                out.append(x / y if kind == "rate" else y / x)
        return out

    def ratio_text(load, kind, who="postling"):
        r = ratio(load, kind, who)
        if r is None or kind == "count":
            return "—"
        pr = pair_ratios(load, kind, who)
        rng = f" (runs {min(pr):.2f}–{max(pr):.2f})" if len(pr) > 1 else ""
        if kind == "rate":
            return f"**{r:.2f}×**{rng} faster" if r >= 1 else f"**{r:.2f}×**{rng} (slower)"
        if kind == "time":
            return f"**{r:.2f}×**{rng} faster" if r >= 1 else f"**{r:.2f}×**{rng} (slower)"
        if kind == "cpu":
            return f"**{r:.2f}×**{rng} less CPU" if r >= 1 else f"**{1 / r:.2f}×** more CPU"
        return f"**{r:.1f}×**{rng} less" if r >= 1 else f"**{1 / r:.2f}×** more"

    fmts = {
        "rate": lambda v: f"{v:,.0f}",
        "time": lambda v: f"{v:.2f}",
        "cpu": lambda v: f"{v:.2f}",
        "kb": lambda v: f"{v:,.0f}",
        "count": lambda v: f"{v:.0f}",
    }

    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w(f"Generated by {'`BENCH_PEERS=postfix make bench`' if has_pf else '`make bench` (postling only)'} "
      f"(`tests/bench/bench.py`), {started} – {finished} UTC ({elapsed / 60:.1f} min). "
      "Do not edit by hand: run it again.")  # fmt: skip
    w("")
    w(f"Every load ran {RUNS} times, interleaved ({', '.join(names)}, {', '.join(names)}, …) against "
      "the same peers on the same machine, except where a row says otherwise. Cells are the "
      "**median over the runs (min–max)**. The ratio column is how many times better postling "
      "is (its rate over Postfix's, or Postfix's time or memory over postling's), with the "
      "range of the per-run pair ratios.")  # fmt: skip
    if SCALE != 1:
        w("")
        w(f"**BENCH_SCALE={SCALE}: message counts are scaled down; these are not the reference numbers.**")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {fx['cpu']}, shared with other jobs (fuzzers, test runs): see the load averages |")
    w(f"| memory | {fx['memory']} |")
    w(f"| OS, kernel | {fx['os']}, Linux {fx['kernel']} |")
    w(f"| spool and queue file system | {clean(fx['filesystem'])} |")
    if "fsync_latency" in b.extra:
        fl, dl = b.extra["fsync_latency"]
        w(f"| fsync cost on it | create + write 4 KiB + fsync a new file: median {fl:.2f} ms; then fsync its directory: median {dl:.2f} ms (200 in a row, before the loads) |")
    w(f"| load average (1, 5, 15 min) | {fx['load_start']} at the start, {fx['load_end']} at the end; before every run in the last table |")
    w(f"| postling | {versions.get('postling', '?')}, commit {fx['commit']}, {fx['rustc']}, release profile (opt-level z, LTO, stripped); glibc build unless a row says musl |")
    if has_pf:
        w(f"| Postfix | {versions.get('Postfix', '?')} (Debian {fx['postfix']}): a private instance (own config and queue directories), no chroot, defaults except as listed under Commands |")
    w(f"| smtp-source, smtp-sink | Debian postfix {fx['postfix']} |")
    w(f"| dnsmasq, strace | Debian dnsmasq-base {fx['dnsmasq-base']}, strace {fx['strace']} |")
    w("")

    w("## Results")
    w("")
    if has_pf:
        w("| load | postling | Postfix | postling vs Postfix |")
        w("|---|---|---|---|")
    else:
        w("| load | postling |")
        w("|---|---|")

    def row(label, load, kind, who="postling", suffix=""):
        f = fmts[kind]
        cells = [label, fmt_stats(vals(load, who), f) + suffix]
        if has_pf:
            cells.append(fmt_stats(vals(load, "Postfix"), f) + suffix)
            cells.append(ratio_text(load, "kb" if kind == "kb" else kind, who))
        w("| " + " | ".join(cells) + " |")

    if "s20" in R:
        m = b.extra["s20_messages"]
        row(f"accepted msgs/s: 20 sessions, {m:,} × 4 KiB (until smtp-source exits)", "s20", "rate")
        row("end-to-end msgs/s: the same, until the sink has all", "s20_e2e", "rate")
    if "s1" in R:
        m = b.extra["s1_messages"]
        row(f"accepted msgs/s: 1 session, {m:,} × 4 KiB", "s1", "rate")
        row("end-to-end msgs/s: 1 session", "s1_e2e", "rate")
    for load, label in (("s20", "20 sessions"), ("s1", "1 session")):
        if load + "_cpu" in R:
            row(f"CPU time per message, ms, {label} (every process of the MTA, accepting and delivering)",
                load + "_cpu", "cpu")  # fmt: skip
    for load, label in (("s20", "20 sessions"), ("s1", "1 session")):
        if load + "_wait" in R:
            cells = [f"serve while accepting, {label}: % of the time on a CPU / **waiting for a CPU** "
                     "(runnable; /proc/PID/schedstat)",
                     f"{fmt_stats(vals(load + '_oncpu'), fmts['count'])}% / "
                     f"**{fmt_stats(vals(load + '_wait'), fmts['count'])}%**"]  # fmt: skip
            if has_pf:
                cells += ["—", "—"]
            w("| " + " | ".join(cells) + " |")
    if "big" in R:
        row("1 MiB message: accept time, ms (one smtp-source session)", "big", "time")
    if "idle" in R:
        row("idle: processes", "idle_procs", "count")
        row("idle: RSS, kB (summed over processes)", "idle", "kb")
        row("idle: anonymous RSS (RssAnon), kB", "idle_anon", "kb")
        row("idle: PSS, kB", "idle_pss", "kb")
        if vals("idle", "postling (musl)"):
            row("idle: RSS, kB — **postling static musl** build", "idle", "kb", who="postling (musl)")
    if "clients200" in R:
        row("200 idle clients after EHLO: processes", "clients200_procs", "count")
        row("200 idle clients: RSS, kB (summed over processes)", "clients200", "kb")
        row("200 idle clients: anonymous RSS, kB", "clients200_anon", "kb")
        row("200 idle clients: PSS, kB", "clients200_pss", "kb")
        if has_pf:
            row("200 idle clients: RSS of the session processes only (serve; smtpd), kB", "clients200_smtpd", "kb")
        if vals("clients200", "postling (musl)"):
            row("200 idle clients: RSS, kB — **postling static musl** build", "clients200", "kb", who="postling (musl)")
    if "idle_after" in R:
        row("idle after the throughput, sendmail and flush loads: RSS, kB (one sample)", "idle_after", "kb")
    if "sendmail" in R:
        c = b.extra["sendmail_count"]
        row(f"`sendmail -t`: median latency, ms ({c:,} per run)", "sendmail", "time")
        row("`sendmail -t`: p90 latency, ms", "sendmail_p90", "time")
        if "spawn_floor" in R:
            cells = ["for scale: spawning `postling --version` and waiting for it, median of 100, ms",
                     fmt_stats(vals("spawn_floor"), fmts["time"])]  # fmt: skip
            if has_pf:
                cells += ["—", "—"]
            w("| " + " | ".join(cells) + " |")
    if "flush_empty" in R:
        row("flush on an empty queue: median of 100, ms (not the same work: see Commands)", "flush_empty", "time")
    if "flush_queue" in R:
        c = b.extra.get("flush_queue_count", 10000)
        row(f"flush of {c:,} queued messages to one destination: until the queue is empty, s", "flush_queue", "time")
        row("… until the sink has them all, s", "flush_queue_sink", "time")
    w("")
    if sizes:
        w("Binary size, bytes (stripped by the release profile):")
        w("")
        for k, v in sizes.items():
            w(f"- {k}: **{v[0]:,}** {v[1]}")
        w("")

    if "fsync" in b.extra:
        w("### fsyncs")
        w("")
        w("`fsync`, `fdatasync` and `sync_file_range` calls, counted with strace during one "
          f"`smtp-source -s 20 -m {b.extra['fsync_messages']:,}` run (until every message had reached the sink "
          "and left the queue), with the time spent in them (`-T`):")  # fmt: skip
        w("")
        for name, d in b.extra["fsync"].items():
            msgs = d["messages"]
            if name == "postling":
                w(f"- postling: {d['total']:,} calls = **{d['total'] / msgs:.2f} per message**: "
                  f"**{d['main'] / msgs:.2f} in serve** before each `250` (message file, envelope file, "
                  f"`msg/` and `env/` directories), {d['others'] / msgs:.2f} in the delivery passes "
                  f"(recording each outcome; {max(d['processes'] - 1, 0)} pass processes). serve spent "
                  f"{d['main_s']:.2f} s inside them, {d['main_s'] / d['accept_s'] * 100:.0f}% of the "
                  f"{d['accept_s']:.2f} s smtp-source took under strace, one at a time (a single thread).")  # fmt: skip
            else:
                w(f"- {name}: {d['total']:,} calls = **{d['total'] / msgs:.2f} per message**, "
                  f"spread over {d['processes']} processes (one cleanup(8) per session: the calls overlap); "
                  f"{d['total_s']:.2f} s inside them in total; smtp-source took {d['accept_s']:.2f} s.")  # fmt: skip
        w("")

    # Goals
    w("## Goals (issue 8)")
    w("")
    w("| goal | measured | |")
    w("|---|---|---|")

    def goal(text, measured, ok):
        verdict = "**met**" if ok else ("**not met**" if ok is not None else "not measured")
        w(f"| {text} | {measured} | {verdict} |")

    def ratio_goal(text, load, need, kind):
        if not has_pf:
            return goal(text, "needs BENCH_PEERS=postfix", None)
        r, pr = ratio(load, kind), pair_ratios(load, kind)
        if r is None:
            return goal(text, "—", None)
        rng = f" (runs {min(pr):.2f}–{max(pr):.2f})" if len(pr) > 1 else ""
        goal(text, f"{r:.2f}×{rng}", r >= need)

    if "s20" in R:
        ratio_goal("accepted msgs/s, 20 sessions ≥ 3× Postfix", "s20", 3, "rate")
    if "s1" in R:
        ratio_goal("accepted msgs/s, 1 session ≥ 2× Postfix", "s1", 2, "rate")
    if "s20" in R:
        ratio_goal("end-to-end msgs/s ≥ 3× Postfix (20 sessions)", "s20_e2e", 3, "rate")
    if "s1" in R:
        ratio_goal("end-to-end msgs/s ≥ 3× Postfix (1 session)", "s1_e2e", 3, "rate")
    if "idle" in R:
        for who in ("postling", "postling (musl)"):
            if vals("idle", who):
                v, p = med("idle", who), med("idle_procs", who)
                goal(f"idle RSS ≤ 2 MiB (2,048 kB), one process{' — musl build' if 'musl' in who else ''}",
                     f"{v:,.0f} kB, {p:.0f} process(es)", v <= 2048 and p == 1)  # fmt: skip
    if "clients200" in R:
        for who in ("postling", "postling (musl)"):
            if vals("clients200", who):
                v, p = med("clients200", who), med("clients200_procs", who)
                goal(f"200 idle clients ≤ 8 MiB (8,192 kB) total{' — musl build' if 'musl' in who else ''}",
                     f"{v:,.0f} kB, {p:.0f} process(es)", v <= 8192)  # fmt: skip
    if "musl" in sizes:
        v = sizes["musl"][0]
        goal("static musl binary ≤ 2 MiB (2,097,152 B)", f"{v:,} B", v <= 2 * 1024 * 1024)
    if "sendmail" in R:
        ratio_goal("`sendmail -t` ≤ 1/5 of Postfix's time (median)", "sendmail", 5, "time")
    if "flush_empty" in R:
        v = med("flush_empty")
        goal("`postling flush` on an empty queue ≤ 2 ms (median)", f"{v:.2f} ms", v <= 2)
    w("")

    analysis = b.analysis(has_pf)
    if analysis or b.notes:
        w("## What bounds postling here")
        w("")
        for a in analysis:
            w(f"- {a}")
        for note in b.notes:
            w(f"- run note: {note}")
        w("")

    w("## Commands")
    w("")
    w("Peers, fresh for each load: `smtp-sink" + (" -u nobody" if IS_ROOT else "") + " -c 127.0.0.2:PORT 1000` "
      "(its `-c` output counts the messages) and "
      "`dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --port=P "
      "--listen-address=127.0.0.1 --bind-interfaces --local=/test/ "
      "--mx-host=remote.test,mx.remote.test,10 --host-record=mx.remote.test,127.0.0.2` "
      "(for postling only; Postfix relays to the numeric relayhost).")  # fmt: skip
    w("")
    w("postling: `postling serve -c postling.conf` with `RUST_LOG=info` (the log goes to a file), where:")
    w("")
    w("```")
    w(re.sub(r"(:|port = )\d{4,5}\b", r"\1PORT", clean(mtas[0].config.read_text())).rstrip())
    w("```")
    if has_pf:
        pf = [m for m in mtas if m.name == "Postfix"][0]
        w("")
        w("Postfix: `postfix -c ETC start` with `main.cf`:")
        w("")
        w("```")
        w(re.sub(r"(:)\d{4,5}\b", r"\1PORT", clean((pf.etc / "main.cf").read_text())).rstrip())
        w("```")
        w("")
        w("and `master.cf`: Debian's services with chroot off, and "
          "`127.0.0.1:PORT inet n - n - 300 smtpd` (300 processes, for the 200 idle clients).")  # fmt: skip
    w("")
    w("| load | command |")
    w("|---|---|")
    for k, v in b.commands.items():
        cell = clean(v).replace("|", "\\|")
        w(f"| {k} | {cell} |")
    if sizes:
        w(f"| size | `cargo build --release --target {MUSL}` (what `make static` runs), `ls -l`; `file`: {fx.get('musl_file', '?')} |")
    w("")

    w("## Every run")
    w("")
    w("| load | MTA | run | result | load average before |")
    w("|---|---|---|---|---|")
    for load, name, r, text, la in b.runs:
        w(f"| {load} | {name} | {r} | {text} | {la} |")
    w("")
    OUT.write_text("\n".join(lines))
    log(f"wrote {OUT}")


def check_tools(pf):
    missing = [t for t in ("smtp-source", "smtp-sink", "dnsmasq") if not shutil.which(t)]
    if pf:
        missing += [t for t in ("postfix", "postqueue", "postconf") if not shutil.which(t)]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (`make bench` installs them)")
    if pf and not IS_ROOT:
        sys.exit("bench: BENCH_PEERS=postfix needs root (postfix start, smtpd as the postfix user)")


def main():
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    with_pf = "postfix" in [p.lower() for p in PEERS]
    check_tools(with_pf)
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_start = loadavg()
    binary = build()
    sizes, fx_extra, musl = {}, {}, None
    if wanted("size") or wanted("memory"):
        musl = build_static()
    if wanted("size"):
        sizes["glibc"] = (binary.stat().st_size, "(`target/release/postling`)")
        if musl:
            sizes["musl"] = (musl.stat().st_size, f"(`target/{MUSL}/release/postling`, `make static`)")
            if shutil.which("file"):
                fx_extra["musl_file"] = run(["file", "-b", str(musl)]).strip()

    work = Path(tempfile.mkdtemp(prefix="postling-bench.", dir="/var/tmp"))
    os.chmod(work, 0o755)
    log(f"work directory {work}")
    b = Bench(work)
    dns = sink = None
    mtas, versions = [], {}
    try:
        sink_port = free_port("127.0.0.2")
        dns = Dns()
        postling = Postling(work, binary, dns.port, sink_port)
        mtas = [postling]
        if with_pf:
            mtas.append(Postfix(work, sink_port))
        versions = {m.name: m.version() for m in mtas}
        b.fsync_latency()

        if wanted("memory"):
            mem = list(mtas)
            if musl:
                mem.insert(1, Postling(work, musl, dns.port, sink_port, name="postling (musl)"))
            b.memory(mem)
        for m in mtas:
            m.start()
        sink = Sink(sink_port)
        if wanted("s20"):
            b.extra["s20_messages"] = n(5000)
            b.throughput("s20", mtas, sink, 20, n(5000))
        if wanted("s1"):
            b.extra["s1_messages"] = n(2000)
            b.throughput("s1", mtas, sink, 1, n(2000))
        if wanted("big"):
            b.big_message(mtas, sink)
        if wanted("sendmail"):
            b.extra["sendmail_count"] = n(1000)
            b.sendmail(mtas, sink, n(1000))
        if wanted("flush_empty"):
            b.flush_empty(mtas)
        if wanted("fsync"):
            b.extra["fsync_messages"] = n(2000)
            b.fsyncs(mtas, sink, n(2000))
        if wanted("idle_after"):
            for m in mtas:
                m.settle()
            time.sleep(2)
            for m in mtas:
                procs, rss, pss, anon = memory(m.pids())
                b.record("idle_after", m, 1, rss,
                         f"{procs} process(es), RSS {rss} kB (anonymous {anon} kB), PSS {pss} kB", loadavg())  # fmt: skip
        sink.stop()
        sink = None
        if wanted("flush_queue"):
            b.extra["flush_queue_count"] = n(10000)
            b.flush_queue(mtas, sink_port, n(10000), int(os.environ.get("BENCH_FLUSH_RUNS", "1")))
    finally:
        if sink:
            sink.stop()
        for m in mtas:
            try:
                m.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {m.name}: {e}")
        if dns:
            dns.stop()
    fx = facts(work)
    fx.update(fx_extra)
    fx["load_start"], fx["load_end"] = load_start, loadavg()
    finished = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    report(b, fx, versions, sizes, started, finished, mtas, time.monotonic() - t_start)
    if KEEP:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
