#!/usr/bin/env python3
"""The chaos suite: one fault per scenario against the flash_sale app as real processes.

    python3 scripts/chaos/run.py [--short] [--scenarios a,b,c] [--repeat N] ...
    (or bash scripts/chaos.sh ..., which builds the app and checks the services first)

For every scenario the runner builds a fresh environment on its own ports,
leaving the shared Redis (6379), Kafka (9092) and the test databases alone:

    redis-server  its own, --save '' --appendonly no (a restart comes back empty)
    tansu         its own broker, sqlite storage in the scenario's directory,
                  advertising the Kafka PROXY's address so that clients keep
                  going through the proxy after the metadata exchange
    MariaDB       the shared one on 3306, database `chaos`
    proxy.py      one per service (redis, mysql, kafka), see proxy.py
    serve         `flash_sale serve` pointed at the three proxies, with its own
                  admin token, namespace, topic and group
    consume       a second consumer process (only where the scenario needs it)

then runs `flash_sale load` against serve, with load's own --redis-url and
--database-url on the REAL services (load reads the invariants back), and
injects the scenario's one fault shortly after the first unit is sold, while
stock is left. Only the faulty process or path is touched and only it comes
back; a healthy process is never restarted.

After load exits the runner prints one line per scenario on stdout,

    scenario=NAME sent=.. queued=.. created=.. lost=.. duplicated=.. stranded=..
      changed=.. oversold=.. converge_ms=.. result=PASS|FAIL

(converge_ms is load's drain_ms), followed on a FAIL by an indented line with
the reasons and the scenario's log directory, and closes with `N passed, N
failed`. A scenario fails when load wrote no summary, its `ok` is false, any
of lost/duplicated/stranded/changed/oversold/over_limit is above 0, or a
process that should have stayed up died. Exit status 1 when any scenario
failed.

Every scenario keeps its logs (serve, consume, load, the proxies, tansu,
redis, and events.log, the runner's own time line) under
/tmp/seckill-chaos/<timestamp>/<scenario>/. Everything a scenario started is
stopped when it ends, also on Ctrl-C, SIGTERM or an exception: every child
runs in its own process group, which is killed in a finally block.

Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import proxy  # noqa: E402  (scripts/chaos/proxy.py: its control client)

ROOT = os.path.dirname(os.path.dirname(HERE))
PROXY = os.path.join(HERE, "proxy.py")
DEFAULT_BIN = os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or "/work/target", "release", "examples", "flash_sale"
)
LOG_ROOT = "/tmp/seckill-chaos"
MYSQL_HOST, MYSQL_PORT, DATABASE = "127.0.0.1", 3306, "chaos"

# The summary counts that must be zero (the printed line shows all but over_limit).
BROKEN_COUNTS = ("lost", "duplicated", "stranded", "changed", "oversold", "over_limit")
SUMMARY_KEYS = (
    "sku_id", "stock", "sent", "queued", "created", "lost", "duplicated", "stranded",
    "changed", "oversold", "over_limit", "drain_ms", "drain_end", "ok",
)
# Environment variables the app reads: the runner passes everything as flags,
# so none of the caller's may leak into a child.
APP_ENV = ("REDIS_URL", "DATABASE_URL", "KAFKA_BROKERS", "SECKILL_LISTEN", "SECKILL_ADMIN_TOKEN", "SECKILL_AUTH_SECRET",
           "SECKILL_TOPIC", "SECKILL_NAMESPACE", "SECKILL_TRUST_FORWARDED_FOR")


class Interrupted(Exception):
    """SIGTERM (SIGINT raises KeyboardInterrupt)."""


class ScenarioError(Exception):
    """The environment of a scenario could not be built or a fault could not be injected."""


# --------------------------------------------------------------------------
# Processes


class Proc:
    """A child process in its own process group, logging to one file.

    `start()` may be called again after `kill()`: the same command line, the
    same working directory, the log appended to (with a marker line).
    """

    def __init__(self, name: str, argv: list[str], log_path: str, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.cwd, self.env = name, argv, log_path, cwd, env
        self.popen: subprocess.Popen | None = None
        self.starts = 0
        # A process the scenario killed on purpose and did not bring back.
        self.expected_dead = False

    def start(self) -> "Proc":
        self.starts += 1
        with open(self.log_path, "ab") as log:
            marker = f"==== chaos: start #{self.starts} at {stamp()}: {shlex.join(self.argv)}\n"
            log.write(marker.encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the whole process group and, for SIGKILL, reaps it."""
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            self.popen.wait()

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; the group is killed in any case."""
        if self.popen is None:
            return
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:  # also whatever the leader left behind in its group
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def stamp() -> str:
    return time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               proc: Proc | None = None, every: float = 0.1) -> None:
    """Polls `check` until it holds; fails early when `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.alive():
            raise ScenarioError(f"{what}: {proc.name} exited with code {proc.returncode()} "
                                f"(log {proc.log_path}):\n{tail(proc.log_path)}")
        time.sleep(every)
    raise ScenarioError(f"{what}: not within {timeout:.0f} s"
                        + (f" (log {proc.log_path}):\n{tail(proc.log_path)}" if proc else ""))


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class Ports:
    """Hands out free loopback ports from `base` up, never the same one twice in a run.

    A fixed range below Linux's ephemeral range (32768+) keeps a restarted
    service from finding its port taken as some connection's source port.
    """

    def __init__(self, base: int) -> None:
        self.next = base

    def take(self) -> int:
        while self.next < 32768:
            port = self.next
            self.next += 1
            if port in (6379, 9092, 3306):
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise ScenarioError("no free port left below 32768")


# --------------------------------------------------------------------------
# Scenarios


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    # Injects the fault and brings back what must come back (blocking).
    fault: Callable[["Env"], None]
    # A separate `consume` process next to serve.
    consume: bool = False
    # Overrides the retry ratio of the load.
    retry_ratio: float | None = None


def fault_kafka_cut(env: "Env") -> None:
    env.proxy_ctl("kafka", "cut")
    env.sleep(10, "kafka proxy cut")
    env.proxy_ctl("kafka", "restore")


def fault_kafka_kill(env: "Env") -> None:
    env.kill("tansu")
    env.sleep(5, "tansu down")
    env.procs["tansu"].start()
    env.event(f"tansu restarted (pid {env.procs['tansu'].pid}) on the same storage")
    wait_until("tansu after restart", lambda: port_open(env.port["kafka"]), 60, env.procs["tansu"])
    env.event("tansu answers again")


def fault_serve_kill(env: "Env") -> None:
    env.kill("serve")
    env.sleep(2, "serve down")
    env.start_serve()
    env.event("serve answers /healthz again")


def fault_consume_kill(env: "Env") -> None:
    env.kill("consume")
    env.procs["consume"].expected_dead = True
    env.event("consume stays down")


def fault_redis_wipe(env: "Env") -> None:
    env.kill("redis")
    env.procs["redis"].start()
    env.event(f"redis-server restarted empty (pid {env.procs['redis'].pid})")
    wait_until("redis after restart", lambda: redis_ping(env.port["redis"]), 30, env.procs["redis"])
    env.event("redis answers again")


def fault_mysql_stall(env: "Env") -> None:
    env.proxy_ctl("mysql", "stall")
    env.sleep(10, "mysql proxy stalled")
    env.proxy_ctl("mysql", "restore")


def fault_redis_cut(env: "Env") -> None:
    env.proxy_ctl("redis", "cut")
    env.sleep(5, "redis proxy cut")
    env.proxy_ctl("redis", "restore")


def fault_none(env: "Env") -> None:
    env.event("no fault")


SCENARIOS = {s.name: s for s in (
    Scenario("kafka-cut", "cut the Kafka proxy for 10 s, then restore", fault_kafka_cut),
    Scenario("kafka-kill", "SIGKILL tansu, restart it after 5 s on the same storage", fault_kafka_kill),
    Scenario("serve-kill", "SIGKILL serve, restart it after 2 s with the same arguments", fault_serve_kill),
    Scenario("consume-kill", "SIGKILL the second consumer process, leave it down", fault_consume_kill,
             consume=True),
    Scenario("redis-wipe", "SIGKILL redis-server, start it again empty on the same port", fault_redis_wipe),
    Scenario("mysql-stall", "stall the MySQL proxy for 10 s, then restore", fault_mysql_stall),
    Scenario("redis-cut", "cut the Redis proxy for 5 s, then restore", fault_redis_cut),
    Scenario("none", "no fault; a high retry ratio, so concurrent replays happen", fault_none,
             retry_ratio=0.5),
)}


# --------------------------------------------------------------------------
# One scenario's environment


class Env:
    """The processes, ports and logs of one scenario run."""

    def __init__(self, scenario: Scenario, label: str, opts: argparse.Namespace, ports: Ports,
                 run_dir: str, run_id: str) -> None:
        self.scenario, self.label, self.opts = scenario, label, opts
        self.dir = os.path.join(run_dir, label)
        os.makedirs(self.dir)
        self.events = open(os.path.join(self.dir, "events.log"), "a", buffering=1)
        self.port = {name: ports.take() for name in (
            "redis", "redis_proxy", "redis_ctl", "mysql_proxy", "mysql_ctl",
            "kafka", "kafka_proxy", "kafka_ctl", "app")}
        self.procs: dict[str, Proc] = {}
        self.token = f"chaos-{random.getrandbits(64):016x}"
        # Signs the buyers' tokens: serve verifies them, load mints them.
        self.auth_secret = f"chaos-secret-{random.getrandbits(128):032x}"
        tag = f"{run_id}-{label.replace('/', '-')}"
        self.namespace, self.topic, self.group = f"chaos-{tag}", f"chaos.{tag}", f"chaos-{tag}"
        self.env = {k: v for k, v in os.environ.items() if k not in APP_ENV}
        self.env.setdefault("RUST_LOG", "info")
        self.failures: list[str] = []
        self.notes: list[str] = []

    # -- bookkeeping ---------------------------------------------------------

    def event(self, message: str) -> None:
        line = f"{stamp()} {message}"
        self.events.write(line + "\n")
        if not self.opts.quiet:
            print(f"  [{self.label}] {line}", file=sys.stderr, flush=True)

    def sleep(self, seconds: float, why: str) -> None:
        self.event(f"{why}: waiting {seconds:g} s")
        time.sleep(seconds)

    def log(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.log")

    def add(self, proc: Proc) -> Proc:
        self.procs[proc.name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        pid = proc.pid
        proc.kill(signal.SIGKILL)
        self.event(f"SIGKILL {name} (pid {pid})")

    def proxy_ctl(self, service: str, command: str) -> None:
        try:
            answer = proxy.ctl(("127.0.0.1", self.port[f"{service}_ctl"]), command)
        except OSError as e:
            raise ScenarioError(f"{service} proxy control: {e}") from e
        self.event(f"{service} proxy {command}: {answer}")
        if not answer.startswith("ok "):
            raise ScenarioError(f"{service} proxy answered {answer!r} to {command}")

    # -- the services ---------------------------------------------------------

    def start_redis(self) -> None:
        redis_dir = os.path.join(self.dir, "redis")
        os.makedirs(redis_dir, exist_ok=True)
        port = self.port["redis"]
        self.add(Proc("redis", [
            self.opts.redis_server, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", redis_dir, "--daemonize", "no",
        ], self.log("redis"), env=self.env)).start()
        wait_until("redis-server", lambda: redis_ping(port), 30, self.procs["redis"])
        self.event(f"redis-server on {port} (pid {self.procs['redis'].pid})")

    def start_tansu(self) -> None:
        # The sqlite path is relative to the working directory (see scripts/kafka.sh).
        state = os.path.join(self.dir, "tansu")
        os.makedirs(os.path.join(state, "data"), exist_ok=True)
        port = self.port["kafka"]
        argv = [
            self.opts.tansu, "broker",
            "--storage-engine", "sqlite://data/tansu.db",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.port['kafka_proxy']}",
        ]
        # tansu logs every request at info: warnings are enough here.
        env = {**self.env, "RUST_LOG": os.environ.get("SECKILL_CHAOS_TANSU_LOG", "warn")}
        self.add(Proc("tansu", argv, self.log("tansu"), cwd=state, env=env)).start()
        wait_until("tansu", lambda: port_open(port), 60, self.procs["tansu"])
        self.event(f"tansu on {port}, advertising the proxy {self.port['kafka_proxy']} "
                   f"(pid {self.procs['tansu'].pid})")

    def start_proxy(self, service: str, upstream: int) -> None:
        listen, ctl = self.port[f"{service}_proxy"], self.port[f"{service}_ctl"]
        name = f"proxy-{service}"
        self.add(Proc(name, [
            sys.executable, PROXY, "--listen", f"127.0.0.1:{listen}",
            "--upstream", f"127.0.0.1:{upstream}", "--control", f"127.0.0.1:{ctl}",
        ], self.log(name), env=self.env)).start()
        wait_until(name, lambda: port_open(ctl), 10, self.procs[name])
        self.event(f"{name} {listen} -> {upstream} (control {ctl})")

    def app_flags(self) -> list[str]:
        """Global flags of serve and consume: everything through the proxies."""
        return [
            "--redis-url", f"redis://127.0.0.1:{self.port['redis_proxy']}",
            "--database-url", f"mysql://root@127.0.0.1:{self.port['mysql_proxy']}/{DATABASE}",
            "--kafka-brokers", f"127.0.0.1:{self.port['kafka_proxy']}",
            "--listen", f"127.0.0.1:{self.port['app']}",
            "--admin-token", self.token, "--auth-secret", self.auth_secret,
            "--namespace", self.namespace, "--topic", self.topic, "--group", self.group,
            "--trust-forwarded-for",
            *shlex.split(self.opts.app_args),
        ]

    @property
    def target(self) -> str:
        return f"http://127.0.0.1:{self.port['app']}"

    def start_serve(self) -> None:
        """Starts serve (or starts it again, same arguments) and waits for /healthz."""
        proc = self.procs.get("serve") or self.add(
            Proc("serve", [self.opts.bin, *self.app_flags(), "serve"], self.log("serve"), env=self.env))
        for attempt in range(3):
            proc.start()
            try:
                wait_until("serve /healthz", lambda: http_get(self.target + "/healthz")[0] == 200,
                           90, proc)
                break
            except ScenarioError:
                # A restart may lose the race for its port; anything else repeats.
                if attempt == 2 or proc.alive():
                    raise
                self.event(f"serve exited at start (code {proc.returncode()}), starting it again")
                time.sleep(1)
        self.event(f"serve on {self.target} (pid {proc.pid})")

    def start_consume(self) -> None:
        proc = self.add(Proc("consume", [self.opts.bin, *self.app_flags(), "consume"],
                             self.log("consume"), env=self.env)).start()

        def consuming() -> bool:
            with open(proc.log_path, "rb") as f:
                return b"flash_sale: consuming" in f.read()

        wait_until("consume", consuming, 60, proc)
        # Let it join the group and take its partitions before the load starts.
        time.sleep(self.opts.consume_settle_s)
        self.event(f"consume running (pid {proc.pid})")

    def build(self) -> None:
        self.start_redis()
        self.start_tansu()
        self.start_proxy("redis", self.port["redis"])
        self.start_proxy("mysql", MYSQL_PORT)
        self.start_proxy("kafka", self.port["kafka"])
        self.start_serve()
        if self.scenario.consume:
            self.start_consume()

    def teardown(self) -> None:
        """Stops everything, the app first (graceful), the services last."""
        order = ["load", "consume", "serve", "proxy-kafka", "proxy-mysql", "proxy-redis",
                 "tansu", "redis"]
        grace = {"serve": 20, "consume": 10, "tansu": 5}
        for name in order + [n for n in self.procs if n not in order]:
            if name in self.procs:
                self.procs[name].stop(grace.get(name, 3))
        self.events.close()

    # -- the run ---------------------------------------------------------------

    def load_argv(self, sku_id: int, summary: str) -> list[str]:
        o = self.opts
        retry = self.scenario.retry_ratio if self.scenario.retry_ratio is not None else o.retry_ratio
        argv = [
            o.bin,
            # load reads the invariants back from the real services, not the proxies.
            "--redis-url", f"redis://127.0.0.1:{self.port['redis']}",
            "--database-url", f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{DATABASE}",
            "--admin-token", self.token, "--auth-secret", self.auth_secret,
            "--namespace", self.namespace, "--topic", self.topic, "--group", self.group,
            "load", "--target", self.target,
            "--sku-id", str(sku_id),
            "--stock", str(o.stock), "--users", str(o.users), "--requests", str(o.requests),
            "--concurrency", str(o.concurrency), "--retry-ratio", str(retry),
            "--drain-timeout-s", str(o.drain_timeout_s), "--drain-idle-s", str(o.drain_idle_s),
            "--report", os.path.join(self.dir, "report.html"),
            "--summary-json", summary, "--quiet",
        ]
        if o.rate and LOAD_FLAGS.get("--rate", True):
            argv += ["--rate", str(o.rate)]
        return argv

    def stock_left(self, sku_id: int) -> int | None:
        status, body = http_get(f"{self.target}/api/v1/skus/{sku_id}", timeout=1)
        if status != 200:
            return None
        try:
            return int(json.loads(body)["stock"])
        except (ValueError, KeyError, TypeError):
            return None

    def wait_for_first_sale(self, sku_id: int, load: Proc) -> int | None:
        """Waits until load has put the SKU on sale and sold a unit; returns the stock left."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and load.alive():
            left = self.stock_left(sku_id)
            if left is not None and left < self.opts.stock:
                return left
            time.sleep(0.05)
        return None

    def run(self) -> dict:
        """Builds the environment, runs load with the fault, returns the result."""
        self.event(f"scenario {self.scenario.name}: {self.scenario.what}")
        self.build()
        sku_id = int(time.time() * 1000) * 1000 + random.randrange(1000)
        summary_path = os.path.join(self.dir, "summary.json")
        load = self.add(Proc("load", self.load_argv(sku_id, summary_path), self.log("load"),
                             env=self.env)).start()
        self.event(f"load started (pid {load.pid}), SKU {sku_id}, {self.opts.stock} units")
        left = self.wait_for_first_sale(sku_id, load)
        if left is None:
            self.event("no sale seen (load exited or the SKU never sold): no fault injected")
            self.failures.append("the fault was not injected: no unit was seen sold")
        else:
            self.event(f"first units sold ({left} left)")
            time.sleep(self.opts.fault_after_s)
            left = self.stock_left(sku_id)
            self.event(f"injecting the fault, {left if left is not None else '?'} units left")
            if left == 0:
                self.notes.append("the stock was gone when the fault landed")
            self.scenario.fault(self)
            self.event("fault over")
        timeout = self.opts.requests / max(self.opts.rate, 1) + self.opts.drain_timeout_s + 180
        try:
            load.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.failures.append(f"load did not finish within {timeout:.0f} s: killed")
            load.kill()
        self.event(f"load exited with code {load.returncode()}")
        for proc in self.procs.values():
            if proc.name != "load" and not proc.expected_dead and not proc.alive():
                self.failures.append(f"{proc.name} died (exit code {proc.returncode()}), "
                                     f"see {proc.log_path}")
        return self.judge(summary_path, load)

    def judge(self, summary_path: str, load: Proc) -> dict:
        try:
            with open(summary_path) as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:
            hint = ""
            if not LOAD_FLAGS.get("--summary-json", True):
                hint = " (this flash_sale's load has no --summary-json flag yet)"
            self.failures.append(f"no summary from load{hint}: {e.__class__.__name__}: {e}; "
                                 f"load exited with code {load.returncode()}, end of its log:\n"
                                 + tail(load.log_path, 8))
            return {}
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            self.failures.append(f"summary lacks {', '.join(missing)}")
        if summary.get("ok") is not True:
            self.failures.append(f"load says ok={json.dumps(summary.get('ok'))}")
        for key in BROKEN_COUNTS:
            value = summary.get(key)
            if isinstance(value, int) and value > 0:
                self.failures.append(f"{key}={value}")
        if summary.get("drain_end") not in (None, "drained"):
            self.notes.append(f"drain_end={summary.get('drain_end')}")
        return summary


def result_line(label: str, summary: dict, passed: bool) -> str:
    def get(key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else str(value)
    fields = ["sent", "queued", "created", "lost", "duplicated", "stranded", "changed", "oversold"]
    parts = [f"scenario={label}"] + [f"{k}={get(k)}" for k in fields]
    parts += [f"converge_ms={get('drain_ms')}", f"result={'PASS' if passed else 'FAIL'}"]
    return " ".join(parts)


# --------------------------------------------------------------------------
# Preflight


# Which of the load flags the runner relies on this binary has (filled by preflight).
LOAD_FLAGS: dict[str, bool] = {}


def preflight(opts: argparse.Namespace) -> None:
    """Checks the binaries and the database before anything starts."""
    problems = []
    if not os.access(opts.bin, os.X_OK):
        problems.append(f"{opts.bin} is missing: cargo build --release --example flash_sale")
    for attr, what in (("tansu", "tansu (bash scripts/kafka.sh installs it)"),
                       ("redis_server", "redis-server (bash scripts/services.sh installs it)")):
        path = getattr(opts, attr)
        found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
        if not found:
            problems.append(f"{what} not found at {path}")
        else:
            setattr(opts, attr, found)
    if problems:
        raise SystemExit("chaos: " + "\n       ".join(problems))
    help_text = subprocess.run([opts.bin, "load", "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    for flag in ("--summary-json", "--rate"):
        LOAD_FLAGS[flag] = flag in help_text
        if not LOAD_FLAGS[flag]:
            print(f"chaos: WARNING: `{os.path.basename(opts.bin)} load` has no {flag} flag yet"
                  + (": every scenario will FAIL for want of a summary" if flag == "--summary-json"
                     else ": the load runs unpaced") , file=sys.stderr)
    mysql = shutil.which("mariadb") or shutil.which("mysql")
    if not mysql:
        raise SystemExit("chaos: no mariadb/mysql client (bash scripts/services.sh installs it)")
    created = subprocess.run([mysql, "-uroot", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE}"],
                             capture_output=True, text=True)
    if created.returncode != 0:
        created = subprocess.run([mysql, "--protocol=TCP", "-h", MYSQL_HOST, "-P", str(MYSQL_PORT),
                                  "-uroot", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE}"],
                                 capture_output=True, text=True)
    if created.returncode != 0:
        raise SystemExit(f"chaos: could not create database {DATABASE}: {created.stderr.strip()} "
                         "(bash scripts/services.sh starts MariaDB)")


# --------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Chaos suite of the flash_sale example: one fault per scenario, real processes.",
        epilog="Scenarios: " + "; ".join(f"{s.name}: {s.what}" for s in SCENARIOS.values()),
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated scenarios (default: all)")
    p.add_argument("--short", action="store_true",
                   help="a small sale for CI: 200 units, 1000 users, 1000 requests at 50/s")
    p.add_argument("--repeat", type=int, default=1, help="run every scenario N times")
    p.add_argument("--stock", type=int, help="units on sale (600; --short 200)")
    p.add_argument("--users", type=int, help="distinct users (5000; --short 1000)")
    p.add_argument("--requests", type=int, help="requests of the load (6000; --short 1000)")
    p.add_argument("--rate", type=int, help="attempts per second (100; --short 50)")
    p.add_argument("--concurrency", type=int, default=100, help="virtual users of the load (100)")
    p.add_argument("--retry-ratio", type=float, default=0.1,
                   help="share of requests that resend an earlier id (0.1; `none` uses 0.5)")
    p.add_argument("--drain-timeout-s", type=int, default=120, help="load's --drain-timeout-s (120)")
    p.add_argument("--drain-idle-s", type=int, default=45, help="load's --drain-idle-s (45)")
    p.add_argument("--fault-after-s", type=float, default=1.0,
                   help="delay between the first unit sold and the fault (1.0)")
    p.add_argument("--consume-settle-s", type=float, default=5.0,
                   help="wait after the second consumer starts, before the load (5.0)")
    p.add_argument("--app-args", default="",
                   help="extra global flags for serve and consume, e.g. --app-args='--reconcile-grace-ms 3000'")
    p.add_argument("--bin", default=DEFAULT_BIN, help=f"the flash_sale binary ({DEFAULT_BIN})")
    p.add_argument("--tansu", default=shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu"))
    p.add_argument("--redis-server", default="redis-server")
    p.add_argument("--base-port", type=int, default=16400,
                   help="the scenarios' ports are taken from here up (16400)")
    p.add_argument("--log-root", default=LOG_ROOT, help=f"where the run directory goes ({LOG_ROOT})")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr, only the result lines")
    opts = p.parse_args(argv)
    defaults = {"stock": (600, 200), "users": (5000, 1000), "requests": (6000, 1000), "rate": (100, 50)}
    for key, (full, short) in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, short if opts.short else full)
    names = [n.strip() for n in opts.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        p.error(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(SCENARIOS)}")
    if opts.repeat < 1:
        p.error("--repeat must be at least 1")
    opts.scenario_list = names
    return opts


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    preflight(opts)

    def on_term(signum, frame):  # noqa: ARG001
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_term)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(opts.log_root, run_id)
    os.makedirs(run_dir, exist_ok=True)
    ports = Ports(opts.base_port)
    print(f"chaos: {len(opts.scenario_list)} scenario(s) x {opts.repeat}, {opts.stock} units, "
          f"{opts.users} users, {opts.requests} requests at {opts.rate}/s; logs in {run_dir}",
          file=sys.stderr, flush=True)
    passed = failed = 0
    interrupted = False
    for rep in range(1, opts.repeat + 1):
        for name in opts.scenario_list:
            label = name if opts.repeat == 1 else f"{name}.{rep}"
            env = Env(SCENARIOS[name], label, opts, ports, run_dir, run_id)
            summary: dict = {}
            started = time.monotonic()
            try:
                summary = env.run()
            except ScenarioError as e:
                env.failures.append(f"environment: {e}")
            except (KeyboardInterrupt, Interrupted):
                env.failures.append("interrupted")
                interrupted = True
            except Exception as e:  # a bug of the runner: still tear down and report
                env.failures.append(f"runner error: {e!r}")
                env.event("runner error:\n" + traceback.format_exc())
            finally:
                # A second Ctrl-C must not cut the teardown short.
                old = signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                try:
                    env.teardown()
                finally:
                    signal.signal(signal.SIGINT, old)
                    signal.signal(signal.SIGTERM, on_term)
            ok = not env.failures
            passed, failed = passed + ok, failed + (not ok)
            print(result_line(label, summary, ok), flush=True)
            if not ok:
                print(f"  reasons: {'; '.join(env.failures)}", flush=True)
                print(f"  logs: {env.dir}", flush=True)
            if env.notes:
                print(f"  notes: {'; '.join(env.notes)}", flush=True)
            if not opts.quiet:
                print(f"  [{label}] took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            if interrupted:
                break
        if interrupted:
            break
    print(f"{passed} passed, {failed} failed", flush=True)
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
