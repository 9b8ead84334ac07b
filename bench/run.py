"""`make bench`: chatapp against its floor (bench/floor.py), side by side, in one run.

Starts each server in its own process (pinned to one core with taskset when there are two,
the load generator on the other), drives it with bench/load.mjs (socket.io-client over
websockets), reads CPU and RSS from /proc, and prints a markdown table plus one JSON line
per figure. Every process it starts is stopped by PID, in `finally`.

    .venv/bin/python bench/run.py            # the full run (< 5 minutes)
    .venv/bin/python bench/run.py --smoke    # tiny counts, a few seconds: proves it runs
"""
import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

PROFILES = {
    "full": {
        "sat_pairs": 20, "sat_window": 16, "sat_seconds": 10,
        "lat_pairs": 20, "rates": [200, 500], "lat_seconds": 8, "warmup": 2,
        "idle_users": 500, "idle_per_user": 10, "idle_wait": 30,
        "storm_pairs": 10, "storm_rate": 200, "storm_logins": 10, "storm_seconds": 8,
        "storm_bcrypt": 12, "storm_login_wait": 5,
        "history_messages": 10_000, "history_convs": 200, "history_samples": 20,
        "flat_sizes": [1_000, 100_000], "flat_samples": 11,
        "group_members": 100, "group_rates": [20, 100], "group_seconds": 8, "group_warmup": 2,
        "group_senders": 10, "group_window": 4, "group_sat_seconds": 10, "group_deflate": False,
        "catchup_changes": 1000, "catchup_repeats": 10,
        "search_messages": 100_000, "search_tail": 200, "search_samples": 10,
        "page_messages": 120, "page_samples": 30,
        "transfer_bytes": 10 * 2**20, "transfer_repeats": 5, "transfer_concurrent": 4,
        "tail_seed": 100_000, "tail_rate": 500, "tail_variants": ["default", "freeze", "fresh"],
    },
    "smoke": {
        "sat_pairs": 2, "sat_window": 4, "sat_seconds": 2,
        "lat_pairs": 2, "rates": [20, 50], "lat_seconds": 1, "warmup": 0.5,
        "idle_users": 4, "idle_per_user": 2, "idle_wait": 10,
        "storm_pairs": 2, "storm_rate": 20, "storm_logins": 2, "storm_seconds": 1,
        "storm_bcrypt": 4, "storm_login_wait": 5,
        "history_messages": 120, "history_convs": 5, "history_samples": 5,
        "flat_sizes": [300, 1_500], "flat_samples": 3,
        "group_members": 10, "group_rates": [5], "group_seconds": 1, "group_warmup": 0,
        "group_senders": 2, "group_window": 2, "group_sat_seconds": 1, "group_deflate": False,
        "catchup_changes": 150, "catchup_repeats": 2,
        "search_messages": 2000, "search_tail": 16, "search_samples": 3,
        "page_messages": 60, "page_samples": 3,
        "transfer_bytes": 2**20, "transfer_repeats": 2, "transfer_concurrent": 2,
        "tail_seed": 300, "tail_rate": 50, "tail_variants": ["default", "freeze", "fresh"],
    },
}
from bench.history import LIMITS, SECRET  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cores():
    return len(os.sched_getaffinity(0))


# Decided once, before the runner pins itself to the generator's core.
SERVER_CPU, LOAD_CPU = (1, 0) if cores() >= 2 and shutil.which("taskset") else (None, None)


def pin_prefix(cpu):
    """`taskset -c N` when there are two cores (and taskset); else run unpinned."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


class Server:
    """chatapp (wsgi.py) or the floor, in a subprocess pinned to SERVER_CPU; stopped by PID."""

    def __init__(self, kind, logdir, env=None):
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
                    "PYTHONUNBUFFERED": "1", "MAX_CONNECTIONS": "20000", **(env or {})}
        if kind == "chatapp":
            self.env.update({"CHATAPP_ENV": "production", "secretKey": SECRET,
                             "RATELIMIT_ENABLED": "true", **LIMITS, "LOG_LEVEL": "WARNING",
                             "ASYNC_MODE": "eventlet"})
            self.env.setdefault("BCRYPT_ROUNDS", "4")
            script = [str(ROOT / "wsgi.py")]
        else:
            script = [str(BENCH / "floor.py"), str(self.port)]
        self.command = pin_prefix(SERVER_CPU) + [sys.executable] + script
        self.log_path = Path(logdir) / f"{kind}-{self.port}.log"
        self.proc = None

    def start(self, timeout=30):
        import requests

        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer /healthz: {self.log_text()}")

    def log_text(self):
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def run_load(server, job, workdir, on_phase=None, timeout=240):
    """Run bench/load.mjs with `job`; returns its result. `on_phase(phase, proc)` samples."""
    job = {**job, "target": {"kind": server.kind, "url": server.url}}
    path = Path(workdir) / f"job-{job['scenario']}-{server.kind}.json"
    path.write_text(json.dumps(job))
    cmd = pin_prefix(LOAD_CPU) + ["node", str(BENCH / "load.mjs"), str(path)]
    proc = subprocess.Popen(cmd, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if "phase" in msg and on_phase:
                on_phase(msg, proc)
            elif "result" in msg:
                return msg["result"]
            elif "error" in msg:
                raise RuntimeError(f"load generator ({job['scenario']}, {server.kind}): "
                                   f"{msg['error']}\nserver log: {server.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job['scenario']} on {server.kind} took over {timeout}s")
        raise RuntimeError(f"load generator exited without a result: {proc.stderr.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """Server and generator CPU (% of one core) between measure_start and measure_end."""

    def __init__(self, server):
        self.server, self.marks, self.values, self.load = server, {}, {}, {}

    def __call__(self, msg, proc):
        key = str(msg.get("key", msg.get("rate", msg.get("logins", ""))))
        now = (time.monotonic(), cpu_seconds(self.server.proc.pid), cpu_seconds(proc.pid))
        if msg["phase"] == "measure_start":
            self.marks[key] = now
        elif msg["phase"] == "measure_end" and key in self.marks:
            (t0, s0, g0), (t1, s1, g1) = self.marks.pop(key), now
            self.values[key] = round(100 * (s1 - s0) / (t1 - t0), 1)
            self.load[key] = round(100 * (g1 - g0) / (t1 - t0), 1)


PROFILE_TO, PROFILE_KINDS = None, ()


def profiled(cpu, server, kind, seconds, name="saturation", key=None):
    """Also record the server with py-spy (collapsed stacks) during the measured window
    (the one marked `key`, when the scenario marks several)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        sys.exit("bench: --profile needs py-spy (.venv/bin/pip install py-spy)")

    def on_phase(msg, proc):
        cpu(msg, proc)
        if msg["phase"] == "measure_start" and (key is None or msg.get("key") == key):
            out = Path(PROFILE_TO) / f"{name}-{kind}.txt"
            subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--duration",
                              str(int(seconds)), "--rate", "200", "--nonblocking", "--format", "raw",
                              "--output", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)

    return on_phase


# --- scenarios: each returns {figure: {"chatapp": v, "floor": v}} -------------------------

def saturation(p, workdir, kinds):
    out = {}
    for kind in kinds:
        with started(kind, workdir) as server:
            cpu = CpuWindow(server)
            on_phase = cpu
            if PROFILE_TO and kind in PROFILE_KINDS:
                on_phase = profiled(cpu, server, kind, p["sat_seconds"])
            r = run_load(server, {"scenario": "saturate", "pairs": p["sat_pairs"],
                                  "window": p["sat_window"], "duration": p["sat_seconds"]},
                         workdir, on_phase)
        ok = r["failed"] == 0 and r["missing"] == 0 and r["missing_other"] == 0 and \
            r["persisted"] is not False and r["dupes"] == 0
        put(out, "saturation.delivered_per_s", kind, r["delivered_per_s"])
        put(out, "saturation.server_cpu_pct", kind, cpu.values.get(""))
        put(out, "saturation.generator_cpu_pct", kind, cpu.load.get(""))
        # Messages per CPU-second of the server: steadier than msg/s on a shared machine.
        busy = (cpu.values.get("") or 0) / 100
        put(out, "saturation.delivered_per_server_cpu_s", kind,
            rnd(r["mean_per_s"] / busy, 0) if busy else None)
        put(out, "saturation.all_delivered_and_stored", kind, ok)
        out.setdefault("_detail", {})[kind] = r
    return out


def latency(p, workdir, kinds):
    out = {}
    for kind in kinds:
        with started(kind, workdir) as server:
            cpu = CpuWindow(server)
            r = run_load(server, {"scenario": "latency", "pairs": p["lat_pairs"], "rates": p["rates"],
                                  "duration": p["lat_seconds"], "warmup": p["warmup"]}, workdir, cpu)
        for rate in p["rates"]:
            row = r["rates"][str(rate)]
            for q in ("p50", "p95", "p99"):
                put(out, f"latency.{rate}.{q}_ms", kind, rnd(row[q]))
            put(out, f"latency.{rate}.server_cpu_pct", kind, cpu.values.get(str(rate)))
            put(out, f"latency.{rate}.all_delivered", kind,
                row["failed"] == 0 and row["missing"] == 0 and row["samples"] >= row["sent"])
        out.setdefault("_detail", {})[kind] = r
    return out


def idle(p, workdir, kinds):
    out = {}
    for kind in kinds:
        with started(kind, workdir) as server:
            rss = {}

            def on_phase(msg, proc):
                rss[msg["phase"]] = server.rss_kib()
                proc.stdin.write("go\n")
                proc.stdin.flush()

            r = run_load(server, {"scenario": "idle", "users": p["idle_users"],
                                  "sockets_per_user": p["idle_per_user"], "connect_concurrency": 100,
                                  "receive_wait": p["idle_wait"]}, workdir, on_phase, timeout=280)
        per = (rss["connected"] - rss["baseline"]) / max(1, r["sockets"])
        put(out, "idle.sockets", kind, r["sockets"])
        put(out, "idle.rss_per_connection_kib", kind, rnd(per))
        put(out, "idle.connect_seconds", kind, rnd(r["connect_seconds"]))
        put(out, "idle.all_received", kind, r["all_received"])
        out.setdefault("_detail", {})[kind] = {**r, "rss_kib": rss}
    return out


def login_storm(p, workdir, kinds):
    """chatapp only (the floor has no logins): the same pairs without, then with, logins."""
    out = {}
    if "chatapp" not in kinds:
        return out
    with started("chatapp", workdir, {"BCRYPT_ROUNDS": str(p["storm_bcrypt"])}) as server:
        r = run_load(server, {"scenario": "login_storm", "pairs": p["storm_pairs"],
                              "rate": p["storm_rate"], "logins_per_s": p["storm_logins"],
                              "duration": p["storm_seconds"], "warmup": p["warmup"],
                              "login_wait": p["storm_login_wait"]}, workdir)
    base, storm = r["base"], r["storm"]
    put(out, "login_storm.p99_ms_without_logins", "chatapp", rnd(base["p99"]))
    put(out, "login_storm.p99_ms_with_logins", "chatapp", rnd(storm["p99"]))
    put(out, "login_storm.p99_increase_pct", "chatapp",
        rnd(100 * (storm["p99"] - base["p99"]) / base["p99"]) if base["p99"] else None)
    put(out, "login_storm.logins_offered", "chatapp", storm["logins_offered"])
    put(out, "login_storm.logins_done_in_time", "chatapp", storm["logins_ok_in_time"])
    put(out, "login_storm.login_p50_ms", "chatapp", rnd(storm["login_p50"]))
    out["_detail"] = {"chatapp": r}
    return out


def history(p, workdir, kinds):
    """In-process (Flask test client) on the embedded store, seeded through the chat service."""
    if "chatapp" not in kinds:
        return {}
    from bench import history as hist

    r = hist.run(p["history_messages"], p["history_convs"], p["history_samples"])
    out = {}
    put(out, "history.page_p50_ms", "chatapp", rnd(r["page"]["p50"]))
    put(out, "history.page_p99_ms", "chatapp", rnd(r["page"]["p99"]))
    put(out, "history.conversations_p50_ms", "chatapp", rnd(r["conversations"]["p50"]))
    put(out, "history.conversations_p99_ms", "chatapp", rnd(r["conversations"]["p99"]))
    flat_figures, r["flat"] = flat_costs(p)
    out.update(flat_figures)
    out["_detail"] = {"chatapp": r}
    return out


def flat_costs(p):
    """Issue 14, targets 4 and 7 (bench/flat.py): each page's cost in a small and a large
    store, in the same process; the list per entry; RSS per stored message. Returns the
    figures and the details."""
    from bench import flat

    r = flat.run(p["flat_sizes"], p["history_convs"], p["flat_samples"])
    small, large = r["sizes"][0], r["sizes"][-1]
    out = {}
    put(out, "flat.small_store_messages", "chatapp", small)
    put(out, "flat.large_store_messages", "chatapp", large)
    for call in flat.CALLS:
        name = "list_per_entry" if call == "list" else call
        put(out, f"flat.{name}.small_cpu_ms", "chatapp", r["costs"][small][call])
        put(out, f"flat.{name}.large_cpu_ms", "chatapp", r["costs"][large][call])
        put(out, f"flat.{name}.large_over_small", "chatapp", r["ratios"][call])
    put(out, "flat.rss_per_stored_message_bytes", "chatapp", r["rss_per_message_bytes"])
    return out, r


def group(p, workdir, kinds):
    """One group, every member connected (one socket each): each message goes to the other
    members. Open loop at each fixed rate (latency per delivery), then saturation."""
    out = {}
    for kind in kinds:
        with started(kind, workdir) as server:
            cpu = CpuWindow(server)
            on_phase = cpu
            if PROFILE_TO and kind in PROFILE_KINDS:
                on_phase = profiled(cpu, server, kind, p["group_sat_seconds"], "group",
                                    "saturation")
            r = run_load(server, {"scenario": "group", "members": p["group_members"],
                                  "rates": p["group_rates"], "duration": p["group_seconds"],
                                  "warmup": p["group_warmup"], "senders": p["group_senders"],
                                  "window": p["group_window"],
                                  "sat_duration": p["group_sat_seconds"],
                                  "deflate": p["group_deflate"]}, workdir, on_phase)
        put(out, "group.members", kind, r["members"])
        for rate in p["group_rates"]:
            row = r["rates"][str(rate)]
            put(out, f"group.{rate}.deliveries_per_s", kind, rnd(row["mean_deliveries_per_s"], 0))
            for q in ("p50", "p95", "p99"):
                put(out, f"group.{rate}.{q}_ms", kind, rnd(row[q]))
            put(out, f"group.{rate}.server_cpu_pct", kind, cpu.values.get(f"rate{rate}"))
        sat = r["saturation"]
        put(out, "group.saturation.deliveries_per_s", kind, rnd(sat["deliveries_per_s"], 0))
        put(out, "group.saturation.messages_per_s", kind, rnd(sat["messages_per_s"], 1))
        put(out, "group.saturation.server_cpu_pct", kind, cpu.values.get("saturation"))
        put(out, "group.saturation.generator_cpu_pct", kind, cpu.load.get("saturation"))
        busy = (cpu.values.get("saturation") or 0) / 100
        put(out, "group.saturation.deliveries_per_server_cpu_s", kind,
            rnd(sat["mean_deliveries_per_s"] / busy, 0) if busy else None)
        put(out, "group.all_delivered_and_stored", kind,
            r["all_delivered"] and r["persisted"] is not False)
        out.setdefault("_detail", {})[kind] = r
    return out


def catchup(p, workdir, kinds):
    """chatapp only (the floor stores nothing): a group and a direct conversation get
    `catchup_changes` changes through the REST API, then a member catches up from version 0
    (bench/catchup.py): per call and per whole catch-up, default limit and limit=500."""
    if "chatapp" not in kinds:
        return {}
    from bench import catchup as cu

    with started("chatapp", workdir) as server:
        r = cu.run(server.url, p["catchup_changes"], p["catchup_repeats"],
                   lambda: cpu_seconds(server.proc.pid))
    out = {}
    for conv in ("group", "direct"):
        row = r[conv]
        put(out, f"catchup.{conv}.changes", "chatapp", row["changes"])
        put(out, f"catchup.{conv}.seed_ms_per_change", "chatapp",
            rnd(1000 * row["seed_seconds"] / row["changes"]))
        for name in ("default_limit", "limit_500"):
            m = row[name]
            put(out, f"catchup.{conv}.{name}.calls", "chatapp", m["calls"])
            put(out, f"catchup.{conv}.{name}.call_p50_ms", "chatapp", rnd(m["call_ms"]["p50"]))
            put(out, f"catchup.{conv}.{name}.call_p99_ms", "chatapp", rnd(m["call_ms"]["p99"]))
            put(out, f"catchup.{conv}.{name}.total_p50_ms", "chatapp", rnd(m["total_ms"]["p50"]))
            put(out, f"catchup.{conv}.{name}.total_p99_ms", "chatapp", rnd(m["total_ms"]["p99"]))
            put(out, f"catchup.{conv}.{name}.server_cpu_ms", "chatapp", rnd(m["server_cpu_ms"], 1))
        put(out, f"catchup.{conv}.all_arrived", "chatapp", row["all_arrived"])
    out["_detail"] = {"chatapp": r}
    return out


def search(p, workdir, kinds):
    """In-process, as history: search pages over `search_messages` messages (bench/rich.py)."""
    if "chatapp" not in kinds:
        return {}
    from bench import rich

    r = rich.search_run(p["search_messages"], p["search_samples"], p["search_tail"])
    out = {}
    put(out, "search.messages", "chatapp", r["seeded"]["messages"])
    for name, row in r["queries"].items():
        put(out, f"search.{name}.p50_ms", "chatapp", rnd(row["p50"]))
        put(out, f"search.{name}.p99_ms", "chatapp", rnd(row["p99"]))
    put(out, "search.all_correct", "chatapp", r["all_correct"])
    out["_detail"] = {"chatapp": r}
    return out


def rich_page(p, workdir, kinds):
    """In-process: the newest page of a group whose messages carry attachments, reactions and
    replies, and of the same group without them (bench/rich.py)."""
    if "chatapp" not in kinds:
        return {}
    from bench import rich

    r = rich.page_run(p["page_messages"], p["page_samples"])
    out = {}
    for kind in ("plain", "rich"):
        put(out, f"rich_page.{kind}.p50_ms", "chatapp", rnd(r[kind]["p50"]))
        put(out, f"rich_page.{kind}.p99_ms", "chatapp", rnd(r[kind]["p99"]))
    put(out, "rich_page.all_correct", "chatapp", r["all_correct"])
    out["_detail"] = {"chatapp": r}
    return out


def attachments(p, workdir, kinds):
    """Upload and download of a `transfer_bytes` file against a running server: MB/s, and the
    server's peak RSS during `transfer_concurrent` uploads at once (bench/rich.py)."""
    if "chatapp" not in kinds:
        return {}
    from bench import rich

    with started("chatapp", workdir) as server:
        r = rich.transfer_run(server.url, server.proc.pid, p["transfer_bytes"],
                              p["transfer_repeats"], p["transfer_concurrent"],
                              lambda: cpu_seconds(server.proc.pid),
                              embedded=not os.environ.get("MONGO_DB_URL"))
    c = r["concurrent"]
    out = {}
    put(out, "attachments.file_mib", "chatapp", rnd(r["size_bytes"] / 2**20))
    for way in ("upload", "download"):
        put(out, f"attachments.{way}_mb_s", "chatapp", r[f"{way}_mb_s"]["p50"])
        put(out, f"attachments.{way}.p50_ms", "chatapp", rnd(r[f"{way}_ms"]["p50"]))
        put(out, f"attachments.{way}.p99_ms", "chatapp", rnd(r[f"{way}_ms"]["p99"]))
        put(out, f"attachments.{way}.server_cpu_ms_per_mib", "chatapp",
            r[f"{way}_server_cpu_ms_per_mib"])
    put(out, "attachments.download.rss_growth_mib", "chatapp", r["download_rss_growth_mib"])
    put(out, "attachments.concurrent.uploads", "chatapp", c["uploads"])
    put(out, "attachments.concurrent.aggregate_mb_s", "chatapp", c["aggregate_mb_s"])
    put(out, "attachments.concurrent.rss_peak_growth_mib", "chatapp", c["peak_growth_mib"])
    put(out, "attachments.concurrent.stored_in_process_mib", "chatapp",
        c["stored_in_process_mib"])
    put(out, "attachments.concurrent.file_x_uploads_mib", "chatapp", c["bar_mib"])
    # The bar: RSS must not grow by the file size times the concurrent uploads (the
    # embedded store's own copy of the stored files left out: on MongoDB it is not there).
    put(out, "attachments.concurrent.growth_beyond_stored_over_file_x_uploads", "chatapp",
        rnd(c["peak_growth_beyond_stored_mib"] / c["bar_mib"]))
    put(out, "attachments.sha256_verified", "chatapp", r["sha256_verified"])
    put(out, "attachments.all_correct", "chatapp", r["all_correct"])
    out["_detail"] = {"chatapp": r}
    return out


class WireProcess:
    """bench/production.py's counting wire server (tests/mongo_wire.py's embedded store) in
    a process of its own, on the generator's core (chatapp's core stays chatapp's); by PID."""

    def __init__(self, logdir):
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}"
        self.log_path = Path(logdir) / f"wire-{self.port}.log"
        self.proc = None

    def start(self, timeout=30):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            pin_prefix(LOAD_CPU) + [sys.executable, "-m", "bench.production", "wire",
                                    "--port", str(self.port)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wire server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("wire server did not listen")

    def stop(self):
        Server.stop(self)


def production(p, workdir, kinds):
    """Issue 14, target 1: the saturation load on chatapp whose store (tests/mongo_wire.py)
    is a separate process (bench/production.py), and on the floor. Figures: messages per
    chatapp-process CPU-second vs the floor's per its CPU-second; the wire server's CPU per
    message; the store commands (round trips) chatapp made per message, counted at the wire
    server over the measured window; every acked message stored once and delivered."""
    from bench import production as prod

    out = {}
    for kind in kinds:
        wire = None
        env = None
        if kind == "chatapp":
            wire = WireProcess(workdir)
            RUNNING.append(wire)
            wire.start()
            env = {"MONGO_DB_URL": f"{wire.url}/chatapp_bench"}
        try:
            with started(kind, workdir, env) as server:
                cpu = CpuWindow(server)
                marks = {}

                def on_phase(msg, proc):
                    cpu(msg, proc)
                    if wire is not None:
                        marks[msg["phase"]] = (cpu_seconds(wire.proc.pid), prod.counts(wire.url))

                if PROFILE_TO and kind in PROFILE_KINDS:
                    on_phase = profiled(on_phase, server, kind, p["sat_seconds"], "production")
                r = run_load(server, {"scenario": "saturate", "pairs": p["sat_pairs"],
                                      "window": p["sat_window"], "duration": p["sat_seconds"]},
                             workdir, on_phase)
                stored = prod.stored_messages(wire.url, "chatapp_bench") if wire else None
        finally:
            if wire is not None:
                wire.stop()
                RUNNING.remove(wire)
        ok = r["failed"] == 0 and r["missing"] == 0 and r["missing_other"] == 0 and \
            r["persisted"] is not False and r["dupes"] == 0 and \
            (stored is None or stored == r["sent_ok"])
        busy = (cpu.values.get("") or 0) / 100
        put(out, "production.delivered_per_s", kind, r["delivered_per_s"])
        put(out, "production.server_cpu_pct", kind, cpu.values.get(""))
        put(out, "production.delivered_per_server_cpu_s", kind,
            rnd(r["mean_per_s"] / busy, 0) if busy else None)
        put(out, "production.all_delivered_and_stored_once", kind, ok)
        if wire is not None:
            (w0, c0), (w1, c1) = marks["measure_start"], marks["measure_end"]
            # Messages acked in the window ~ messages received in it (mean_per_s x duration).
            sent = r["mean_per_s"] * p["sat_seconds"]
            per = prod.diff(c1, c0)
            put(out, "production.wire_cpu_ms_per_message", kind,
                rnd(1000 * (w1 - w0) / sent, 3) if sent else None)
            put(out, "production.wire_cpu_pct", kind, rnd(100 * (w1 - w0) / p["sat_seconds"], 1))
            put(out, "production.round_trips_per_message", kind,
                rnd(sum(per.values()) / sent, 2) if sent else None)
            r = {**r, "stored": stored, "commands_in_window": per,
                 "commands_per_message": {k: round(v / sent, 2) for k, v in per.items()}
                 if sent else None}
        out.setdefault("_detail", {})[kind] = r
    return out


def tail(p, workdir, kinds):
    """Issue 14, target 2: the latency scenario (open loop at `tail_rate`) on a chatapp that
    already stores `tail_seed` messages (bench/tail.py seeds them in its process), against
    the floor in the same run; chatapp's collection pauses in the measured window
    (`gc.callbacks`), for each variant in `tail_variants` (bench/tail.py's TAIL_GC)."""
    from bench import tail as tl

    out = {}
    runs = [("floor", None)] if "floor" in kinds else []
    if "chatapp" in kinds:
        runs += [("chatapp", v) for v in p["tail_variants"]]
    detail = {}
    for kind, variant in runs:
        log = Path(workdir) / f"gc-{variant}.json"
        seed = 0 if variant == "fresh" else p["tail_seed"]  # fresh: the same, nothing stored
        env = {"TAIL_SEED": str(seed), "TAIL_GC": variant or "",
               "GC_TIMINGS_LOG": str(log)} if variant else None
        ctx = started(kind, workdir, env)
        if variant:
            ctx.server.command = pin_prefix(SERVER_CPU) + [sys.executable, "-m", "bench.tail",
                                                           "serve"]
        times = {}
        server = ctx.server
        RUNNING.append(server)
        try:
            server.start(timeout=600)  # the seed comes first (~1 min for 100 000)
            cpu = CpuWindow(server)

            def on_phase(msg, proc):
                cpu(msg, proc)
                times[msg["phase"]] = time.monotonic()

            if PROFILE_TO and kind in PROFILE_KINDS:
                on_phase = profiled(on_phase, server, kind, p["lat_seconds"],
                                    f"tail-{variant or 'floor'}")
            r = run_load(server, {"scenario": "latency", "pairs": p["lat_pairs"],
                                  "rates": [p["tail_rate"]], "duration": p["lat_seconds"],
                                  "warmup": p["warmup"]}, workdir, on_phase)
            rss = server.rss_kib()
        finally:
            server.stop()
            RUNNING.remove(server)
        if variant:
            d_log = server.log_text().strip().splitlines()
            seeded_line = next((line for line in d_log if line.startswith("bench tail:")), "")
        row = r["rates"][str(p["tail_rate"])]
        name = kind if not variant or variant == "default" else f"{kind}.{variant}"
        col = "chatapp" if kind == "chatapp" else "floor"
        prefix = "tail" if not variant or variant == "default" else f"tail.{variant}"
        for q in ("p50", "p99"):
            put(out, f"{prefix}.{q}_ms", col, rnd(row[q]))
        put(out, f"{prefix}.server_cpu_pct", col, cpu.values.get(str(p["tail_rate"])))
        put(out, f"{prefix}.all_delivered", col, row["failed"] == 0 and row["missing"] == 0
            and row["samples"] >= row["sent"] and r["persisted"] is not False)
        d = {**row, "persisted": r["persisted"], "rss_kib": rss}
        if variant:
            d["seed"] = seeded_line
        if variant:
            if variant != "default" and "floor" in out.get("tail.p99_ms", {}):
                put(out, f"{prefix}.p99_ms", "floor", out["tail.p99_ms"]["floor"])
            pauses = json.loads(log.read_text()) if log.exists() else []
            w = tl.window(pauses, times.get("measure_start", 0), times.get("measure_end", 0))
            gen2 = w.get("gen2", {"count": 0, "total_ms": 0.0, "longest_ms": 0.0})
            put(out, f"{prefix}.seeded_messages", col, seed)
            put(out, f"{prefix}.rss_mib", col, rnd(rss / 1024, 0))
            put(out, f"{prefix}.gc_gen2_count", col, gen2["count"])
            put(out, f"{prefix}.gc_gen2_total_ms", col, gen2["total_ms"])
            put(out, f"{prefix}.gc_gen2_longest_ms", col, gen2["longest_ms"])
            put(out, f"{prefix}.gc_all_gens_total_ms", col,
                rnd(sum(g["total_ms"] for g in w.values())))
            # Over the server's whole life (the seed included): what one gen-2 pause costs
            # once the heap holds the store, whether or not one fell in the window.
            life = tl.window(pauses, 0, float("inf")).get("gen2", {"count": 0, "longest_ms": 0.0})
            last = [s for _, s, g in pauses if g == 2][-1:] or [0.0]
            put(out, f"{prefix}.gc_gen2_life_count", col, life["count"])
            put(out, f"{prefix}.gc_gen2_life_longest_ms", col, life["longest_ms"])
            put(out, f"{prefix}.gc_gen2_life_last_ms", col, rnd(1000 * last[0]))
            d["gc_in_window"] = w
        detail[name] = d
    out["_detail"] = detail
    return out


SCENARIOS = {"saturation": saturation, "latency": latency, "idle": idle,
             "login_storm": login_storm, "history": history, "group": group,
             "catchup": catchup, "search": search, "rich_page": rich_page,
             "attachments": attachments, "production": production,
             "tail": tail}


class started:
    def __init__(self, kind, workdir, env=None):
        self.server = Server(kind, workdir, env)

    def __enter__(self):
        RUNNING.append(self.server)
        return self.server.start()

    def __exit__(self, *exc):
        self.server.stop()
        RUNNING.remove(self.server)


RUNNING = []


def put(out, figure, kind, value):
    out.setdefault(figure, {})[kind] = value


def rnd(x, digits=2):
    return None if x is None else round(float(x), digits)


# --- report -------------------------------------------------------------------------------

TARGETS = {
    # issue 14, target 3: the embedded store's saturation (issue 10 asked 0.7)
    "saturation.delivered_per_s": ("ratio>=", 0.6),
    # issue 14, target 1: chatapp's store in its own process (bench/production.py)
    "production.delivered_per_server_cpu_s": ("ratio>=", 0.6),
    # issue 14, target 2: p99 at 500 msg/s on a server storing 100 000 messages (bench/tail.py)
    "tail.p99_ms": ("ratio<=", 3.0),
    "tail.freeze.p99_ms": ("ratio<=", 3.0),
    "latency.500.p99_ms": ("ratio<=", 2.0),
    "idle.rss_per_connection_kib": ("ratio<=", 1.2),
    # issue 14, target 6: the relay's p99 with 10 logins/s at bcrypt 12 (issue 10 asked +20 %)
    "login_storm.p99_increase_pct": ("value<", 100),
    # issue 14, target 5 (from the groups issue): a 100-member group's fan-out
    "group.saturation.deliveries_per_server_cpu_s": ("ratio>=", 0.7),
    # issue 14, target 4: a page costs at most 1.5x as much in the large store (bench/flat.py)
    **{f"flat.{call}.large_over_small": ("value<=", 1.5)
       for call in ("newest", "after", "changes", "search", "list_per_entry")},
    "attachments.concurrent.growth_beyond_stored_over_file_x_uploads": ("value<", 1),
}


def ratio(row):
    c, f = row.get("chatapp"), row.get("floor")
    if isinstance(c, bool) or isinstance(f, bool) or not c or not f:
        return None
    return round(c / f, 2)


def met(figure, row):
    """True/False against the figure's target; None when it has none or was not measured."""
    if figure not in TARGETS:
        return None
    kind, limit = TARGETS[figure]
    value = row.get("chatapp") if kind.startswith("value") else ratio(row)
    if value is None:
        return None
    return {"ratio>=": value >= limit, "ratio<=": value <= limit, "value<": value < limit,
            "value<=": value <= limit}[kind]


def target_text(figure):
    """`ratio >= 0.7`, `value < 20`, `value <= 1.5`."""
    kind, limit = TARGETS[figure]
    name = kind.rstrip("<>=")
    op = kind[len(name):]
    return f"{name} {op} {limit}"


def verdict(figure, row):
    if figure not in TARGETS:
        return ""
    ok = met(figure, row)
    if ok is None:
        return "n/a"
    return f"{'met' if ok else 'NOT met'} ({target_text(figure)})"


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:g}" if isinstance(v, float) else str(v)


def report(figures, meta):
    lines = [f"chatapp vs floor — {meta['cores']} cores, server pinned to cpu {SERVER_CPU}, "
             f"load generator to cpu {LOAD_CPU}; {meta['store']}; profile {meta['profile']}", "",
             "| figure | chatapp | floor | chatapp/floor | target |",
             "| --- | --- | --- | --- | --- |"]
    for figure, row in figures.items():
        r = ratio(row)
        lines.append(f"| {figure} | {fmt(row.get('chatapp'))} | {fmt(row.get('floor'))} | "
                     f"{fmt(r)} | {verdict(figure, row)} |")
    return "\n".join(lines)


def versions():
    names = ["flask", "flask-socketio", "python-socketio", "python-engineio", "eventlet",
             "pymongo", "mongomock", "bcrypt"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    node = subprocess.run(["node", "--version"], capture_output=True, text=True)
    out["node"] = node.stdout.strip()
    try:
        pkg = json.loads((BENCH / "node_modules/socket.io-client/package.json").read_text())
        out["socket.io-client"] = pkg["version"]
    except OSError:
        out["socket.io-client"] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True)
    out["chatapp_commit"] = commit.stdout.strip() or None
    return out


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: proves the bench runs")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run these scenarios")
    parser.add_argument("--targets", nargs="*", default=["floor", "chatapp"],
                        choices=["floor", "chatapp"])
    parser.add_argument("--nice", type=int, default=0,
                        help="run everything at this niceness (e.g. -10 as root: less noise "
                             "from other work on the machine)")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the servers with py-spy during the saturation, group "
                             "saturation, production and tail windows (collapsed stacks in "
                             "DIR; summarise with bench/profile_summary.py)")
    parser.add_argument("--json-out", help="also write every figure to this file (JSON)")
    parser.add_argument("--group-deflate", action="store_true",
                        help="group scenario: offer permessage-deflate as the other scenarios do "
                             "(then the generator, not the floor, is the limit: bench/README.md)")
    args = parser.parse_args(argv)
    profile = "smoke" if args.smoke else "full"
    p = dict(PROFILES[profile], group_deflate=args.group_deflate)
    global PROFILE_TO, PROFILE_KINDS
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        PROFILE_TO, PROFILE_KINDS = args.profile, tuple(args.targets)
    fd_limit = raise_fd_limit()  # inherited by the servers and the generator
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited too
    if LOAD_CPU is not None:
        os.sched_setaffinity(0, {LOAD_CPU})  # the runner sleeps; keep it off the server's core
    needed = p["idle_users"] * p["idle_per_user"] + 200
    if fd_limit < needed:
        sys.exit(f"bench: open-file limit {fd_limit} < {needed}; raise the hard limit (ulimit -Hn)")
    meta = {"bench": "meta", "profile": profile, "cores": os.cpu_count(), "pinned": LOAD_CPU is not None,
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "store": "MongoDB" if os.environ.get("MONGO_DB_URL") else "embedded store (mongomock)",
            "fd_limit": fd_limit, "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    figures, details = {}, {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chatapp-bench-") as workdir:
        try:
            for name in args.only or SCENARIOS:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                res = SCENARIOS[name](p, workdir, args.targets)
                details[name] = res.pop("_detail", None)
                figures.update(res)
                for figure, row in res.items():  # progress, in case a later scenario fails
                    print(f"bench:   {figure} {row}", file=sys.stderr, flush=True)
        finally:
            for server in list(RUNNING):
                server.stop()
    meta["seconds"] = round(time.monotonic() - t0, 1)
    print(report(figures, meta))
    for conv, row in ((details.get("catchup") or {}).get("chatapp") or {}).items():
        print(f"\ncatchup.{conv}: {row['changes']} changes made ({row['made']}); "
              f"problems: {row['problems'] or 'none'}")
    if (details.get("search") or {}).get("chatapp"):
        r = details["search"]["chatapp"]
        print(f"\nsearch: {r['seeded']['messages']} messages seeded in "
              f"{r['seeded']['seconds']} s ({r['seeded']['how']}); matching: "
              f"{ {name: q['matching'] for name, q in r['queries'].items()} }; "
              f"problems: {r['problems'] or 'none'}; indexes: {json.dumps(r['indexes'])}")
    if (details.get("rich_page") or {}).get("chatapp"):
        r = details["rich_page"]["chatapp"]
        print(f"\nrich_page: {r['seeded']['messages_per_conversation']} messages a group, "
              f"rich: {r['seeded']['rich']}; page bytes {r['page_bytes']}; "
              f"problems: {r['problems'] or 'none'}")
    if (details.get("attachments") or {}).get("chatapp"):
        r = details["attachments"]["chatapp"]
        print(f"\nattachments: {json.dumps(r['concurrent'])}; "
              f"problems: {r['problems'] or 'none'}")
    if (details.get("production") or {}).get("chatapp"):
        r = details["production"]["chatapp"]
        print(f"\nproduction: store commands per message in the window (counted at the wire "
              f"server): {json.dumps(r['commands_per_message'])}; stored {r['stored']} of "
              f"{r['sent_ok']} acked")
    for name, r in (details.get("tail") or {}).items():
        if r.get("seed"):
            print(f"\ntail {name}: {r['seed']}; collections in the window: "
                  f"{json.dumps(r['gc_in_window'])}")
    if (details.get("history") or {}).get("chatapp"):
        print(f"\nhistory: seeded by {details['history']['chatapp']['seeded']['how']}; "
              f"indexes: {json.dumps(details['history']['chatapp']['indexes'])}")
        flat = details["history"]["chatapp"]["flat"]
        print(f"\nflat: stores of {flat['sizes']} messages, {flat['convs']} conversations "
              f"listed; median CPU ms per call of {flat['samples']}; seeded: {flat['seeded']}; "
              f"indexes: {json.dumps(flat['indexes'][flat['sizes'][-1]])}")
    print()
    print(json.dumps(meta))
    for figure, row in figures.items():
        line = {"figure": figure, "chatapp": row.get("chatapp"), "floor": row.get("floor"),
                "ratio": ratio(row)}
        if figure in TARGETS:  # e.g. "ratio >= 0.7", met true/false (null when not measured)
            line["target"], line["met"] = target_text(figure), met(figure, row)
        print(json.dumps(line))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"meta": meta, "figures": figures,
                                                   "details": details}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
