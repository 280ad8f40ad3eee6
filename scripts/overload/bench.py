#!/usr/bin/env python3
"""The overload bench of the flash_sale example: capacity, then 3x capacity
with overload protection on and off, then MySQL slowed behind a proxy.

    bash scripts/overload-bench.sh            # builds, then runs this
    python3 scripts/overload/bench.py --help  # every flag

Every load is open loop (`load --open-loop`): attempt n is sent n / rate
seconds after the start whatever the earlier answers did, and its latency
counts from that intended time, so a stalled service cannot slow the load
down and hide the stall (no coordinated omission).

1. Capacity C: the highest arrival rate at which the p99 of every answer
   stays under --p99-ms (20 ms) and the service decides at least 97 % of
   what arrives, with protection off (nothing sheds). Found by doubling
   from --start-rate, then two bisections.
2. Offered 3 x C for --seconds, once with protection on (bulkhead, adaptive
   concurrency limit, breakers) and once with it off: goodput (decided
   purchases per second), p99 of the admitted requests (every answer but a
   503), p99 of all.
3. MySQL slowed: the instance reaches MariaDB through scripts/chaos/proxy.py
   with `delay --mysql-delay-ms` while a load of C / 2 runs; the buy path
   keeps answering from Redis, the consumer backs off; the delay is lifted
   when the load ends, and the drain must lose nothing.

Each run is a fresh SKU with a stock no run can sell out, buyers drawn from
a hundred million users (each buys once: every decided attempt is a sale),
rate limits set out of the way; every run's invariants (nothing lost,
duplicated or oversold) are read back from MySQL and Redis by the load, and
a broken one fails the bench. Kafka is librdkafka's in-process mock cluster.
Service and load share the machine's cores: the table says what one box can
do, with its load generator on it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROXY = os.path.join(ROOT, "scripts", "chaos", "proxy.py")
sys.path.insert(0, os.path.join(ROOT, "scripts", "chaos"))
import proxy  # noqa: E402  (its control client)

DATABASE = "overload"
# Environment variables the app reads: everything goes as flags instead.
APP_ENV = ("REDIS_URL", "DATABASE_URL", "KAFKA_BROKERS", "SECKILL_LISTEN", "SECKILL_ADMIN_TOKEN",
           "SECKILL_AUTH_SECRET", "SECKILL_TOPIC", "SECKILL_NAMESPACE",
           "SECKILL_TRUST_FORWARDED_FOR", "SECKILL_BREAKERS", "SECKILL_ADAPTIVE_LIMIT")
OUT_OF_THE_WAY = ["--ip-rate", "10000000", "--ip-burst", "10000000",
                  "--user-rate", "10000000", "--user-burst", "10000000",
                  "--global-rate", "10000000", "--global-capacity", "10000000"]
PROTECTION = {
    # The app's defaults (bulkhead of 10,000, Bbr limit from 32 to 1,000 with
    # 150 % headroom, breakers on) with the adaptive limit turned on.
    "on": ["--adaptive-limit", "on", "--breakers", "on"],
    "off": ["--adaptive-limit", "off", "--breakers", "off", "--max-in-flight", "1000000"],
}


def log(message: str) -> None:
    print(f"[overload] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.dir = tempfile.mkdtemp(prefix="seckill-overload-")
        self.env = {k: v for k, v in os.environ.items() if k not in APP_ENV}
        self.token = f"overload-{random.getrandbits(64):016x}"
        self.secret = f"overload-secret-{random.getrandbits(128):032x}"
        self.namespace = f"overload-{random.getrandbits(32):08x}"
        self.procs: list[subprocess.Popen] = []
        self.runs: list[dict] = []
        self.protection = dict(PROTECTION)
        if opts.on_args:
            self.protection["on"] = opts.on_args.split()

    # processes --------------------------------------------------------------

    def service_flags(self, database_port: int) -> list[str]:
        return ["--redis-url", self.opts.redis_url,
                "--database-url", f"mysql://root@127.0.0.1:{database_port}/{DATABASE}",
                "--admin-token", self.token, "--auth-secret", self.secret,
                "--namespace", self.namespace, "--topic", f"{self.namespace}-orders",
                "--group", f"{self.namespace}-group"]

    def start_service(self, protection: str, database_port: int) -> tuple[subprocess.Popen, str]:
        port = free_port()
        argv = [self.opts.bin, *self.service_flags(database_port), "--kafka-brokers", "",
                "--listen", f"127.0.0.1:{port}", "--trust-forwarded-for", *OUT_OF_THE_WAY,
                *self.protection[protection], *self.opts.app_args.split(), "serve"]
        log_path = os.path.join(self.dir, f"serve-{protection}-{port}.log")
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=open(log_path, "w"))
        self.procs.append(proc)
        target = f"http://127.0.0.1:{port}"
        wait_http(f"{target}/healthz", proc)
        log(f"service with protection {protection} on {target} (log {log_path})")
        return proc, target

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def load(self, target: str, rate: int, label: str, during=None, stock: int = 100_000_000) -> dict:
        """One open-loop run at `rate` for --seconds; its summary."""
        o = self.opts
        summary = os.path.join(self.dir, f"{label}-{rate}.json")
        requests = max(1, int(rate * o.seconds))
        argv = [o.bin, *self.service_flags(3306), "load", "--target", target,
                "--open-loop", "--rate", str(rate), "--requests", str(requests),
                "--concurrency", str(min(o.max_in_flight_client, max(64, rate))),
                "--users", "100000000", "--client-ips", "10000", "--stock", str(stock),
                "--retry-ratio", "0", "--quiet", "--summary-json", summary,
                "--report", os.path.join(self.dir, f"{label}-{rate}.html"),
                "--drain-timeout-s", "300", "--drain-idle-s", "60",
                "--request-timeout-s", "10"]
        timer = None
        if during is not None:
            timer = threading.Timer(o.seconds + 1, during)
            timer.start()
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if timer is not None:
            timer.cancel()
            during()
        if not os.path.exists(summary):
            raise RuntimeError(f"load at {rate}/s wrote no summary (exit {out.returncode}):\n"
                               f"{out.stderr[-2000:]}")
        with open(summary) as f:
            result = json.load(f)
        result.update(label=label, offered=rate)
        self.runs.append(result)
        shed = sum(n for k, n in result["outcomes"].items() if k == "http 503")
        log(f"{label}: offered {rate}/s, decided {result['decided_per_second']:.0f}/s, "
            f"p99 {result['p99_ms']:.1f} ms (admitted {result['admitted_p99_ms']:.1f} ms), "
            f"max {result['max_ms']:.0f} ms, 503 {shed}, invariants {'ok' if result['ok'] else 'BROKEN'}")
        return result

    def passes(self, result: dict) -> bool:
        return (result["p99_ms"] < self.opts.p99_ms
                and result["decided_per_second"] >= 0.97 * result["offered"])

    # phases -----------------------------------------------------------------

    def capacity(self, target: str) -> int:
        rate, good, bad = self.opts.start_rate, 0, None
        while bad is None:
            if self.passes(self.load(target, rate, "capacity")):
                good, rate = rate, rate * 2
            else:
                bad = rate
            if rate > self.opts.max_rate:
                return good
        for _ in range(self.opts.bisections):
            mid = (good + bad) // 2
            if mid in (good, bad):
                break
            if self.passes(self.load(target, mid, "capacity")):
                good = mid
            else:
                bad = mid
        return good

    def run(self) -> int:
        o = self.opts
        subprocess.run(["mariadb", "--protocol=TCP", "-h", "127.0.0.1", "-P", "3306", "-u", "root",
                        "-e", f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`"], check=True)
        results: dict = {"seconds": o.seconds, "p99_goal_ms": o.p99_ms}
        # C is the service's own capacity: measured with nothing shedding.
        service, target = self.start_service("off", 3306)
        try:
            capacity = o.skip_capacity or self.capacity(target)
            if capacity == 0:
                raise RuntimeError(f"even {o.start_rate}/s does not pass: lower --start-rate")
            results["capacity"] = capacity
            log(f"capacity C = {capacity}/s")
            results["off"] = self.load(target, 3 * capacity, "3C protection off")
            # The floor of this box at that rate: the cheapest answer there is
            # (one unit on sale: every later request is answered sold out in
            # process, no Redis), with the load generator on the same cores.
            results["floor"] = self.load(target, 3 * capacity, "3C sold-out floor", stock=1)
        finally:
            self.stop(service)
        service, target = self.start_service("on", 3306)
        try:
            results["on"] = self.load(target, 3 * capacity, "3C protection on")
        finally:
            self.stop(service)
        if not o.skip_mysql:
            results["mysql_slow"] = self.mysql_slow(capacity)
        self.report(results)
        broken = [r["label"] for r in self.runs if not r["ok"]]
        if broken:
            log(f"invariants broken in: {', '.join(broken)}")
            return 1
        return 0

    def mysql_slow(self, capacity: int) -> dict:
        listen, control = free_port(), free_port()
        proxy_proc = subprocess.Popen(
            [sys.executable, PROXY, "--listen", f"127.0.0.1:{listen}", "--upstream", "127.0.0.1:3306",
             "--control", f"127.0.0.1:{control}"],
            stderr=open(os.path.join(self.dir, "proxy-mysql.log"), "w"))
        self.procs.append(proxy_proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                proxy.ctl(("127.0.0.1", control), "status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        service, target = self.start_service("on", listen)
        try:
            answer = proxy.ctl(("127.0.0.1", control), f"delay {self.opts.mysql_delay_ms}")
            log(f"MySQL proxy: {answer}")
            result = self.load(target, max(1, capacity // 2), "MySQL +200 ms",
                               during=lambda: proxy.ctl(("127.0.0.1", control), "restore"))
        finally:
            self.stop(service)
            self.stop(proxy_proc)
        return result

    def report(self, results: dict) -> None:
        c = results["capacity"]
        measured = [r for r in self.runs if r["label"] == "capacity" and r["offered"] == c]
        rows = [("capacity C (p99 < %d ms)" % self.opts.p99_ms, measured[-1])] if measured else []
        rows += [("3C, protection off", results["off"]), ("3C, protection on", results["on"]),
                 ("3C, sold-out answers (the box's floor)", results["floor"])]
        if "mysql_slow" in results:
            rows.append((f"C/2, MySQL +{self.opts.mysql_delay_ms} ms, breakers on",
                         results["mysql_slow"]))
        lines = ["| run | offered/s | goodput/s | goodput / C | p99 admitted | p99 all | max | 503 | invariants |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows:
            shed = r["outcomes"].get("http 503", 0)
            lines.append(
                f"| {name} | {r['offered']:,} | {r['decided_per_second']:,.0f} | "
                f"{r['decided_per_second'] / c:.2f} | {r['admitted_p99_ms']:.1f} ms | "
                f"{r['p99_ms']:.1f} ms | {r['max_ms']:.0f} ms | {shed:,} | "
                f"{'0 lost, 0 duplicated' if r['ok'] else 'BROKEN'} |")
        on, off = results["on"], results["off"]
        lines.append("")
        floor = results["floor"]
        lines.append(f"goodput at 3C / C: protection on {on['decided_per_second'] / c:.2f}, "
                     f"off {off['decided_per_second'] / c:.2f} (goal >= 0.90 with protection); "
                     f"p99 of admitted at 3C: on {on['admitted_p99_ms']:.1f} ms, "
                     f"off {off['admitted_p99_ms']:.1f} ms (goal < 50 ms with protection), "
                     f"the box's floor at 3C {floor['p99_ms']:.1f} ms "
                     f"(on / floor {on['admitted_p99_ms'] / max(floor['p99_ms'], 0.001):.2f})")
        table = "\n".join(lines)
        print(table)
        os.makedirs(os.path.dirname(self.opts.out) or ".", exist_ok=True)
        chart = os.path.splitext(self.opts.out)[0] + ".svg"
        with open(chart, "w") as f:
            f.write(svg_chart(rows, c))
        log(f"chart: {chart}")
        results["runs"] = self.runs
        os.makedirs(os.path.dirname(self.opts.out) or ".", exist_ok=True)
        with open(self.opts.out, "w") as f:
            json.dump(results, f, indent=2)
        log(f"every run: {self.opts.out}; logs and reports: {self.dir}")

    def close(self) -> None:
        """Stops what is left and drops the bench's Redis keys and database."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if shutil.which("redis-cli"):
            url = self.opts.redis_url
            keys = subprocess.run(["redis-cli", "-u", url, "--scan", "--pattern", f"*{{{self.namespace}}}*"],
                                  capture_output=True, text=True).stdout.split()
            for i in range(0, len(keys), 500):
                subprocess.run(["redis-cli", "-u", url, "DEL", *keys[i:i + 500]], capture_output=True)
        subprocess.run(["mariadb", "--protocol=TCP", "-h", "127.0.0.1", "-P", "3306", "-u", "root",
                        "-e", f"DROP DATABASE IF EXISTS `{DATABASE}`"], capture_output=True)


def svg_chart(rows: list[tuple[str, dict]], capacity: int) -> str:
    """Two bar groups per run: goodput as a share of C, and p99 of the
    admitted requests in ms (its own scale), as a standalone SVG."""
    width, bar_h, gap, left = 760, 18, 14, 250
    height = 60 + len(rows) * (2 * bar_h + gap)
    worst_ms = max([r["admitted_p99_ms"] for _, r in rows] + [50.0])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14">Overload bench: goodput / C (blue, C = '
             f'{capacity:,}/s) and p99 of admitted requests (orange, ms)</text>']
    span = width - left - 90
    y = 40
    for name, r in rows:
        share = r["decided_per_second"] / capacity
        ms = r["admitted_p99_ms"]
        parts.append(f'<text x="10" y="{y + bar_h + 4}">{name}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(1, span * min(share, 1.5) / 1.5):.0f}" '
                     f'height="{bar_h - 2}" fill="#3b6ea5"/>')
        parts.append(f'<text x="{left + span * min(share, 1.5) / 1.5 + 6:.0f}" y="{y + 13}">'
                     f'{share:.2f} C</text>')
        parts.append(f'<rect x="{left}" y="{y + bar_h}" width="{max(1, span * ms / worst_ms):.0f}" '
                     f'height="{bar_h - 2}" fill="#d9822b"/>')
        parts.append(f'<text x="{left + span * ms / worst_ms + 6:.0f}" y="{y + bar_h + 13}">'
                     f'{ms:.1f} ms</text>')
        y += 2 * bar_h + gap
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target_dir = os.environ.get("CARGO_TARGET_DIR") or "/work/target"
    parser.add_argument("--bin", default=os.path.join(target_dir, "release", "examples", "flash_sale"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load (s)")
    parser.add_argument("--start-rate", type=int, default=1000)
    parser.add_argument("--max-rate", type=int, default=200_000)
    parser.add_argument("--bisections", type=int, default=2)
    parser.add_argument("--p99-ms", type=float, default=20.0)
    parser.add_argument("--mysql-delay-ms", type=int, default=200)
    parser.add_argument("--skip-mysql", action="store_true")
    parser.add_argument("--max-in-flight-client", type=int, default=15_000,
                        help="most attempts the load keeps in flight (its file descriptors)")
    parser.add_argument("--app-args", default="", help="more flags for serve, both runs")
    parser.add_argument("--on-args", default="",
                        help="the flags of 'protection on' instead of: " + " ".join(PROTECTION["on"]))
    parser.add_argument("--skip-capacity", type=int, default=0, metavar="C",
                        help="take C as the capacity instead of measuring it")
    parser.add_argument("--out", default=os.path.join(target_dir, "overload", "results.json"))
    parser.add_argument("--short", action="store_true", help="CI size: 2 s loads, one bisection")
    opts = parser.parse_args(argv)
    if opts.short:
        opts.seconds, opts.bisections = 2.0, 1
    if not os.access(opts.bin, os.X_OK):
        log(f"no binary at {opts.bin}: cargo build --release --example flash_sale")
        return 2
    if shutil.which("mariadb") is None:
        log("the mariadb client is missing: bash scripts/services.sh installs it")
        return 2
    bench = Bench(opts)
    try:
        return bench.run()
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
