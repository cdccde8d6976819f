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
    """(process count, RSS sum kB, PSS sum kB) of live pids."""
    pids = [p for p in pids if status_kb(p, "VmRSS")]
    return (
        len(pids),
        sum(status_kb(p, "VmRSS") for p in pids),
        sum(pss_kb(p) for p in pids),
    )


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
            stderr=subprocess.DEVNULL,
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
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
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
    name = "postling"

    def __init__(self, work, binary, dns_port, sink_port):
        self.bin = binary
        self.dir = work / "postling"
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
    p = subprocess.run(cmd, capture_output=True, text=True)
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
                t0, accept, p = smtp_source(args, mta.port)
                done = sink.wait(max(120, messages / 20))
                if p.returncode != 0:
                    self.notes.append(
                        f"{load} run {r} {mta.name}: smtp-source exited {p.returncode}: "
                        + (p.stderr.strip().splitlines() or [""])[-1]
                    )
                e2e = (done - t0) if done else None
                acc_rate = messages / accept
                e2e_rate = messages / e2e if e2e else None
                self.results.setdefault(load + "_e2e", {}).setdefault(mta.name, []).append(e2e_rate)
                self.record(
                    load, mta, r, acc_rate,
                    f"accepted {messages} in {accept:.2f} s = {acc_rate:.0f} msg/s; "
                    + (f"all at the sink after {e2e:.2f} s = {e2e_rate:.0f} msg/s"
                       if e2e else "NOT all at the sink (timeout)"),
                    la,
                )  # fmt: skip
                mta.settle()

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

    def memory(self, mtas):
        self.commands["idle"] = "VmRSS (and Pss) from /proc/PID/status and smaps_rollup, 2 s after start, empty queue"
        self.commands["clients200"] = (
            "200 TCP connections to the MTA, each reads the banner and sends `EHLO bench.example.org`, "
            "then all stay idle; 1 s later sum VmRSS/Pss over the MTA's processes"
        )
        for r in range(1, RUNS + 1):
            for mta in mtas:
                mta.start()
                time.sleep(2)
                la = loadavg()
                procs, rss, pss = memory(mta.pids())
                self.results.setdefault("idle_procs", {}).setdefault(mta.name, []).append(procs)
                self.results.setdefault("idle_pss", {}).setdefault(mta.name, []).append(pss)
                self.record("idle", mta, r, rss, f"{procs} process(es), RSS {rss} kB, PSS {pss} kB", la)
                la = loadavg()
                (procs, rss, pss), (sprocs, srss, spss) = self.idle_clients(mta)
                self.results.setdefault("clients200_procs", {}).setdefault(mta.name, []).append(procs)
                self.results.setdefault("clients200_pss", {}).setdefault(mta.name, []).append(pss)
                self.results.setdefault("clients200_smtpd", {}).setdefault(mta.name, []).append(srss)
                self.results.setdefault("clients200_smtpd_procs", {}).setdefault(mta.name, []).append(sprocs)
                self.record(
                    "clients200", mta, r, rss,
                    f"all: {procs} processes, RSS {rss} kB, PSS {pss} kB; "
                    f"session processes: {sprocs}, RSS {srss} kB, PSS {spss} kB",
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
        for r in range(1, RUNS + 1):
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

    def flush_queue(self, mtas, sink_port, count):
        """`count` messages queued for one destination while its MX is down, then the MX
        comes up and one flush delivers them all."""
        self.commands["flush_queue"] = (
            f"with the sink down, `smtp-source -s 20 -m {count} -l 4096` into the MTA; wait until "
            f"all {count} are deferred (no delivery running); "
            "postling: stop serve, start the sink, time `postling flush -c CONF` until it exits "
            "(and until the sink has all); Postfix: start the sink, `postqueue -c ETC -f`, time "
            "until the sink has all"
        )
        for r in range(1, RUNS + 1):
            for mta in mtas:
                mta.settle()
                t0, accept, p = smtp_source(["-s", "20", "-m", str(count), "-l", "4096"], mta.port)
                if p.returncode != 0:
                    self.notes.append(f"flush_queue run {r} {mta.name}: smtp-source exited {p.returncode}")
                if isinstance(mta, Postling):
                    ok = wait_until(lambda: mta.queued() >= count and not mta.busy(), 600, 0.5)
                    mta.stop()
                else:
                    ok = wait_until(lambda: mta.deferred() >= count, 600, 0.5)
                if not ok:
                    self.notes.append(f"flush_queue run {r} {mta.name}: only {mta.queued()} queued")
                time.sleep(1)
                sink = Sink(sink_port)
                try:
                    sink.expect(count)
                    la = loadavg()
                    t0 = time.monotonic()
                    p = subprocess.run(mta.flush_cmd(), env=getattr(mta, "env", None),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
                    exited = time.monotonic() - t0
                    done = sink.wait(900)
                    total = (done - t0) if done else None
                    if p.returncode != 0:
                        self.notes.append(f"flush_queue run {r} {mta.name}: flush exit {p.returncode}")
                    self.results.setdefault("flush_queue_exit", {}).setdefault(mta.name, []).append(exited)
                    self.record(
                        "flush_queue", mta, r, total,
                        (f"all {count} at the sink after {total:.2f} s = {count / total:.0f} msg/s"
                         if total else f"only {sink.count} at the sink (timeout)")
                        + f"; flush command exited after {exited:.3f} s",
                        la,
                    )  # fmt: skip
                    if isinstance(mta, Postling):
                        mta.start()  # also waits for an empty queue
                    else:
                        mta.settle(300)
                finally:
                    sink.stop()

    # -- fsyncs ------------------------------------------------------------------------

    def fsyncs(self, mtas, sink, messages):
        self.commands["fsync"] = (
            "strace -f -qq -e trace=fsync,fdatasync,sync_file_range -o FILE -p PID... "
            f"(postling: serve; Postfix: master and all its processes) during "
            f"`smtp-source -s 20 -m {messages} -l 4096 …` until the sink has all and the queue is empty; "
            "calls counted per process (the same calls `strace -c -f` totals), divided by messages"
        )
        if not shutil.which("strace"):
            self.notes.append("fsync: strace is not installed; skipped")
            return
        for mta in mtas:
            mta.settle()
            out = self.work / f"strace-{mta.name}.txt"
            pids = mta.pids()
            cmd = ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range", "-o", str(out)]
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
            per_pid = {}
            for line in out.read_text().splitlines():
                m = re.match(r"(\d+)\s+(fsync|fdatasync|sync_file_range)\(", line)
                if m:
                    per_pid[int(m.group(1))] = per_pid.get(int(m.group(1)), 0) + 1
            total = sum(per_pid.values())
            main = per_pid.get(mta.main_pid(), 0)
            self.extra.setdefault("fsync", {})[mta.name] = {
                "messages": messages,
                "total": total,
                "main": main,
                "others": total - main,
                "processes": len(per_pid),
                "accept_s": accept,
            }
            log(f"fsync {mta.name}: {total} calls for {messages} messages "
                f"({total / messages:.2f}/msg; main process {main})")  # fmt: skip

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


def fmt_stats(values, unit_fmt):
    s = stats(values)
    if s is None:
        return "—"
    med, lo, hi = s
    if len([v for v in values if v is not None]) == 1:
        return unit_fmt(med)
    return f"{unit_fmt(med)} ({unit_fmt(lo)}–{unit_fmt(hi)})"


def report(b, fx, versions, sizes, started, finished, mtas):
    R = b.results
    names = [m.name for m in mtas]
    has_pf = "Postfix" in names

    def vals(load, name):
        return R.get(load, {}).get(name, [])

    def med(load, name):
        s = stats(vals(load, name))
        return s[0] if s else None

    def ratio(load, higher_is_better=True):
        a, c = med(load, "postling"), med(load, "Postfix")
        if not a or not c:
            return None
        return a / c if higher_is_better else c / a

    def pair_ratios(load, higher_is_better=True):
        a, c = vals(load, "postling"), vals(load, "Postfix")
        out = []
        for x, y in zip(a, c):
            if x and y:
                out.append(x / y if higher_is_better else y / x)
        return out

    rate = lambda v: f"{v:,.0f}"
    ms = lambda v: f"{v:.2f}"
    ms1 = lambda v: f"{v:.1f}"
    kb = lambda v: f"{v:,.0f}"
    secs = lambda v: f"{v:.2f}"
    cnt = lambda v: f"{v:.0f}"

    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w(f"Generated by `make bench` ({'`BENCH_PEERS=postfix make bench`' if has_pf else 'postling only'}; "
      f"script: `tests/bench/bench.py`) from {started} to {finished} UTC. "
      f"Do not edit by hand: run it again.")  # fmt: skip
    w("")
    w(f"Every load ran {RUNS} times, interleaved ({' / '.join(names)} / {' / '.join(names)} …), "
      "each against the same peers on the same machine. Cells are the **median of the runs "
      "(min–max)**; a ratio is postling's median over Postfix's (or the inverse for times), "
      "written `×`, with the range of the per-run pair ratios.")  # fmt: skip
    if SCALE != 1:
        w("")
        w(f"**BENCH_SCALE={SCALE}: message counts are scaled down; not the reference numbers.**")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {fx['cpu']} (shared with other jobs: fuzzers, test runs) |")
    w(f"| memory | {fx['memory']} |")
    w(f"| OS, kernel | {fx['os']}, Linux {fx['kernel']} |")
    w(f"| spool/queue file system | {fx['filesystem']} |")
    if "fsync_latency" in b.extra:
        fl, dl = b.extra["fsync_latency"]
        w(f"| fsync cost | create + write 4 KiB + fsync a file: median {fl:.2f} ms; fsync its directory: median {dl:.2f} ms |")
    w(f"| load average (1 5 15 min) | at start {fx['load_start']}, at end {fx['load_end']}; per run below |")
    w(f"| postling | {versions.get('postling', '?')}, commit {fx['commit']}, {fx['rustc']}, release profile (opt-level z, LTO) |")
    if has_pf:
        w(f"| Postfix | {versions.get('Postfix', '?')} (Debian package {fx['postfix']}), private instance, no chroot, "
          "defaults except: relayhost, no DNS, no TLS, smtpd maxproc 300 (see Commands) |")  # fmt: skip
    w(f"| smtp-source, smtp-sink | from the Debian postfix package {fx['postfix']} |")
    w(f"| dnsmasq | Debian dnsmasq-base {fx['dnsmasq-base']} |")
    w("")

    w("## Results")
    w("")
    hdr = "| load | postling |" + (" Postfix | postling vs Postfix |" if has_pf else "")
    w(hdr)
    w("|---|---|" + ("---|---|" if has_pf else ""))

    def row(label, load, f, hib=True, unit=""):
        cells = [label, fmt_stats(vals(load, "postling"), f) + unit]
        if has_pf:
            cells.append(fmt_stats(vals(load, "Postfix"), f) + unit)
            r = ratio(load, hib)
            pr = pair_ratios(load, hib)
            if r:
                txt = f"{r:.2f}×"
                if len(pr) > 1:
                    txt += f" ({min(pr):.2f}–{max(pr):.2f})"
                if hib:
                    txt += " faster" if r >= 1 else " (slower)"
                else:
                    txt += " faster" if r >= 1 else " (slower)"
                cells.append(txt)
            else:
                cells.append("—")
        w("| " + " | ".join(cells) + " |")

    def row_mem(label, load, unit="kB", better_low=True):
        cells = [label, fmt_stats(vals(load, "postling"), kb) + " " + unit]
        if has_pf:
            cells.append(fmt_stats(vals(load, "Postfix"), kb) + " " + unit)
            r = ratio(load, higher_is_better=False)
            cells.append(f"{r:.2f}× less" if r and r >= 1 else (f"{1 / r:.2f}× more" if r else "—"))
        w("| " + " | ".join(cells) + " |")

    if "s20" in R:
        m = b.commands["s20"].split()[4]
        row(f"accepted msgs/s, 20 sessions, {m} × 4 KiB", "s20", rate)
        row(f"end-to-end msgs/s (until the sink has all), 20 sessions", "s20_e2e", rate)
    if "s1" in R:
        m = b.commands["s1"].split()[4]
        row(f"accepted msgs/s, 1 session, {m} × 4 KiB", "s1", rate)
        row("end-to-end msgs/s, 1 session", "s1_e2e", rate)
    if "big" in R:
        row("1 MiB message: accept time (ms, smtp-source run)", "big", ms1, hib=False)
    if "idle" in R:
        row_mem("idle: RSS sum", "idle")
        row_mem("idle: PSS sum", "idle_pss")
        row("idle: processes", "idle_procs", cnt, hib=False)
    if "clients200" in R:
        row_mem("200 idle clients after EHLO: RSS sum, all processes", "clients200")
        row_mem("200 idle clients: PSS sum, all processes", "clients200_pss")
        row_mem("200 idle clients: RSS sum of session processes (postling: serve; Postfix: smtpd)", "clients200_smtpd")
        row("200 idle clients: processes", "clients200_procs", cnt, hib=False)
    if "idle_after" in R:
        row_mem("idle after all the loads above: RSS sum", "idle_after")
    if "sendmail" in R:
        row("`sendmail -t`: median latency (ms)", "sendmail", ms, hib=False)
        row("`sendmail -t`: p90 latency (ms)", "sendmail_p90", ms, hib=False)
    if "flush_empty" in R:
        row("flush on an empty queue: median (ms) — not the same work, see Commands", "flush_empty", ms, hib=False)
    if "flush_queue" in R:
        c = b.extra.get("flush_queue_count", 10000)
        row(f"flush of {c:,} queued messages to one destination: until the sink has all (s)", "flush_queue", secs, hib=False)
        row("  … until the flush command exits (s)", "flush_queue_exit", secs, hib=False)
    w("")
    if sizes:
        w("Binary size (bytes, stripped):")
        w("")
        for k, v in sizes.items():
            w(f"- {k}: {v}")
        w("")
    if "fsync" in b.extra:
        w("fsync-family calls (`fsync`, `fdatasync`, `sync_file_range`) per message, counted with strace "
          "during a 20-session run until every message had been delivered to the sink:")  # fmt: skip
        w("")
        for name, d in b.extra["fsync"].items():
            msgs = d["messages"]
            if name == "postling":
                w(f"- postling: {d['total']} calls for {msgs} messages = **{d['total'] / msgs:.2f} per message**: "
                  f"{d['main'] / msgs:.2f} in serve (acceptance: before each 250) and "
                  f"{d['others'] / msgs:.2f} in the delivery passes (recording each outcome, "
                  f"{d['processes'] - (1 if d['main'] else 0)} pass processes)")  # fmt: skip
            else:
                w(f"- {name}: {d['total']} calls for {msgs} messages = **{d['total'] / msgs:.2f} per message** "
                  f"(over {d['processes']} processes)")  # fmt: skip
        w("")

    # Goals
    w("## Goals (issue 8)")
    w("")
    w("| goal | measured | met? |")
    w("|---|---|---|")

    def goal(text, measured, ok):
        w(f"| {text} | {measured} | {'**met**' if ok else '**not met**' if ok is not None else 'not measured'} |")

    def ratio_goal(text, load, need, hib=True):
        if not has_pf:
            goal(text, "needs BENCH_PEERS=postfix", None)
            return
        r = ratio(load, hib)
        pr = pair_ratios(load, hib)
        if r is None:
            goal(text, "—", None)
            return
        rng = f" (runs {min(pr):.2f}–{max(pr):.2f})" if len(pr) > 1 else ""
        goal(text, f"{r:.2f}×{rng}", r >= need)

    if "s20" in R:
        ratio_goal("accepted msgs/s, 20 sessions ≥ 3× Postfix", "s20", 3)
        ratio_goal("end-to-end msgs/s, 20 sessions ≥ 3× Postfix", "s20_e2e", 3)
    if "s1" in R:
        ratio_goal("accepted msgs/s, 1 session ≥ 2× Postfix", "s1", 2)
        ratio_goal("end-to-end msgs/s, 1 session ≥ 3× Postfix", "s1_e2e", 3)
    if "idle" in R:
        v, p = med("idle", "postling"), med("idle_procs", "postling")
        goal("idle RSS ≤ 2 MiB (2,048 kB), one process", f"{v:,.0f} kB, {p:.0f} process(es)",
             v <= 2048 and p == 1)  # fmt: skip
    if "clients200" in R:
        v = med("clients200", "postling")
        p = med("clients200_procs", "postling")
        goal("200 idle clients ≤ 8 MiB (8,192 kB) total", f"{v:,.0f} kB in {p:.0f} process(es)", v <= 8192)
    if "musl" in sizes:
        v = int(sizes["musl"].split()[0].replace(",", ""))
        goal("static musl binary ≤ 2 MiB (2,097,152 B)", f"{v:,} B", v <= 2 * 1024 * 1024)
    if "sendmail" in R:
        ratio_goal("`sendmail -t` ≤ 1/5 of Postfix's time (median)", "sendmail", 5, hib=False)
    if "flush_empty" in R:
        v = med("flush_empty", "postling")
        goal("`postling flush` on an empty queue ≤ 2 ms (median)", f"{v:.2f} ms", v <= 2)
    w("")

    if b.notes:
        w("## Notes from this run")
        w("")
        for note in b.notes:
            w(f"- {note}")
        w("")

    w("## Commands")
    w("")
    w("Peers: `smtp-sink" + (" -u nobody" if IS_ROOT else "") + " -c 127.0.0.2:PORT 1000` "
      "(messages counted from its `-c` output), fresh for each load; "
      "`dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --port=P "
      "--listen-address=127.0.0.1 --bind-interfaces --local=/test/ "
      "--mx-host=remote.test,mx.remote.test,10 --host-record=mx.remote.test,127.0.0.2`.")  # fmt: skip
    w("")
    w("postling: `postling serve -c postling.conf` (RUST_LOG=info, log to a file), with:")
    w("")
    w("```")
    w(re.sub(r"/var/tmp/postling-bench\.[^/]+", "WORK", mtas[0].config.read_text()).rstrip())
    w("```")
    if has_pf:
        pf = mtas[1]
        w("")
        w("Postfix: `postfix -c ETC start`, `main.cf`:")
        w("")
        w("```")
        w(re.sub(r"/var/tmp/postling-bench\.[^/]+", "WORK", (pf.etc / "main.cf").read_text()).rstrip())
        w("```")
        w("")
        w("`master.cf`: Debian's services with chroot off, and "
          f"`127.0.0.1:PORT inet n - n - 300 smtpd`.")  # fmt: skip
    w("")
    w("| load | command |")
    w("|---|---|")
    for k, v in b.commands.items():
        cell = v.replace("|", "\\|")
        w(f"| {k} | {cell} |")
    if sizes:
        w(f"| size | `cargo build --release --target {MUSL}` (what `make static` runs; the profile strips), `ls -l`; `file` says: {fx.get('musl_file', '?')} |")
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


# ---------------------------------------------------------------------------------------


def check_tools(pf):
    missing = [t for t in ("smtp-source", "smtp-sink", "dnsmasq") if not shutil.which(t)]
    if pf:
        missing += [t for t in ("postfix", "postqueue", "postconf") if not shutil.which(t)]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (`make bench` installs them)")


def main():
    os.environ.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    os.environ["PATH"] = os.environ["PATH"] + ":/usr/sbin:/sbin"
    with_pf = "postfix" in [p.lower() for p in PEERS]
    check_tools(with_pf)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_start = loadavg()
    binary = build()
    sizes = {}
    fx_extra = {}
    if wanted("size"):
        sizes["glibc (target/release/postling)"] = f"{binary.stat().st_size:,}"
        musl = build_static()
        if musl:
            sizes["musl"] = f"{musl.stat().st_size:,} (target/{MUSL}/release/postling)"
            fx_extra["musl_file"] = run(["file", "-b", str(musl)]).strip() if shutil.which("file") else "?"

    work = Path(tempfile.mkdtemp(prefix="postling-bench.", dir="/var/tmp"))
    os.chmod(work, 0o755)
    log(f"work directory {work}")
    b = Bench(work)
    dns = sink = None
    mtas = []
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
            b.memory(mtas)
        for m in mtas:
            m.start()
        sink = Sink(sink_port)
        if wanted("s20"):
            b.throughput("s20", mtas, sink, 20, n(5000))
        if wanted("s1"):
            b.throughput("s1", mtas, sink, 1, n(2000))
        if wanted("big"):
            b.big_message(mtas, sink)
        if wanted("sendmail"):
            b.sendmail(mtas, sink, n(1000))
        if wanted("flush_empty"):
            b.flush_empty(mtas)
        if wanted("fsync"):
            b.fsyncs(mtas, sink, n(2000))
        if wanted("idle_after"):
            for m in mtas:
                m.settle()
            time.sleep(2)
            for m in mtas:
                procs, rss, pss = memory(m.pids())
                b.record("idle_after", m, 1, rss, f"{procs} process(es), RSS {rss} kB, PSS {pss} kB", loadavg())
        sink.stop()
        sink = None
        if wanted("flush_queue"):
            b.extra["flush_queue_count"] = n(10000)
            b.flush_queue(mtas, sink_port, n(10000))
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
    report(b, fx, versions, sizes, started, finished, mtas)
    if KEEP:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
