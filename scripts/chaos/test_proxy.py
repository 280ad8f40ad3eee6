#!/usr/bin/env python3
"""Tests of proxy.py against a local echo server (standard library only).

    python3 scripts/chaos/test_proxy.py -v

Each test starts proxy.py as a real process between a client socket and a
threaded echo server on ephemeral loopback ports, drives it through its
control port (the `ctl` client mode) and checks what the client sees:
forwarding, cut (open connections closed, new ones accepted then closed),
stall (nothing forwarded, no user-space buffering, resume on restore, new
connections held until restore), delay (every chunk held, in order), an upstream that refuses or resets, and
half-close.
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(HERE, "proxy.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Echo(socketserver.BaseRequestHandler):
    """Echoes until EOF; `RESET` makes it reset the connection instead."""

    def handle(self) -> None:
        sock = self.request
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            if data.startswith(b"RESET"):
                # SO_LINGER 0: close() sends RST.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                sock.close()
                return
            sock.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class ProxyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.echo = Server(("127.0.0.1", 0), Echo)
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        self.up_port = self.echo.server_address[1]
        self.port, self.ctl_port = free_port(), free_port()
        self.proc = self.start_proxy(self.up_port)

    def start_proxy(self, upstream: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, PROXY, "--listen", f"127.0.0.1:{self.port}",
             "--upstream", f"127.0.0.1:{upstream}", "--control", f"127.0.0.1:{self.ctl_port}"],
            stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.ctl("status") == "ok open":
                    return proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise RuntimeError("proxy did not start")

    def tearDown(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc.stderr.close()
        self.echo.shutdown()
        self.echo.server_close()

    def ctl(self, command: str) -> str:
        out = subprocess.run(
            [sys.executable, PROXY, "ctl", f"127.0.0.1:{self.ctl_port}", command],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode not in (0, 1) or not out.stdout:
            raise OSError(out.stderr)
        return out.stdout.strip()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock

    def roundtrip(self, sock: socket.socket, data: bytes) -> bytes:
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    def assert_closed(self, sock: socket.socket) -> None:
        sock.settimeout(3)
        try:
            self.assertEqual(sock.recv(10), b"")
        except ConnectionResetError:
            pass

    def test_forwards(self) -> None:
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"hello"), b"hello")
            big = os.urandom(3 << 20)
            sender = threading.Thread(target=s.sendall, args=(big,))
            sender.start()
            got = b""
            while len(got) < len(big):
                got += s.recv(1 << 20)
            sender.join()
            self.assertEqual(got, big)

    def test_cut_closes_open_connections_and_refuses_new_ones(self) -> None:
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"a"), b"a")
            self.assertEqual(self.ctl("cut"), "ok cut")
            self.assert_closed(s)
        with self.connect() as s:  # accepted, then closed at once
            self.assert_closed(s)
        self.assertEqual(self.ctl("restore"), "ok open")
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"b"), b"b")

    def test_stall_holds_and_restore_resumes(self) -> None:
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"a"), b"a")
            self.assertEqual(self.ctl("stall"), "ok stall")
            s.sendall(b"held")
            s.settimeout(0.7)
            with self.assertRaises(socket.timeout):
                s.recv(10)
            with self.connect() as new:  # accepted, but not forwarded
                new.sendall(b"new")
                new.settimeout(0.5)
                with self.assertRaises(socket.timeout):
                    new.recv(10)
                self.assertEqual(self.ctl("status"), "ok stall")
                self.assertEqual(self.ctl("restore"), "ok open")
                new.settimeout(5)
                self.assertEqual(new.recv(10), b"new")
            s.settimeout(5)
            self.assertEqual(s.recv(10), b"held")

    def test_stall_buffers_nothing_in_user_space(self) -> None:
        """The proxy stops reading: the sender blocks once the kernel buffers are full."""
        rss_before = rss_kib(self.proc.pid)
        with self.connect() as s:
            self.ctl("stall")
            s.setblocking(False)
            sent = 0
            chunk = b"x" * 65536
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.2)
                    try:
                        sent += s.send(chunk)
                    except BlockingIOError:
                        break
            # Loopback socket buffers hold a few MiB at most; a proxy that kept
            # reading would have taken everything sent for 5 s.
            self.assertLess(sent, 16 << 20, "the proxy kept reading during the stall")
            self.assertLess(rss_kib(self.proc.pid) - rss_before, 16 << 10)
            self.ctl("restore")
            s.setblocking(True)
            s.settimeout(5)
            got = 0
            while got < sent:
                got += len(s.recv(1 << 20))
            self.assertEqual(got, sent)

    def test_upstream_refused_closes_the_client(self) -> None:
        self.tearDown()
        self.echo = Server(("127.0.0.1", 0), Echo)
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        self.proc = self.start_proxy(free_port())  # nothing listens there
        with self.connect() as s:
            self.assert_closed(s)
        self.assertEqual(self.proc.poll(), None)
        self.assertEqual(self.ctl("status"), "ok open")

    def test_upstream_reset_closes_the_client_and_the_proxy_survives(self) -> None:
        with self.connect() as s:
            s.sendall(b"RESET")
            self.assert_closed(s)
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"still here"), b"still here")

    def test_client_reset_is_harmless(self) -> None:
        s = self.connect()
        self.roundtrip(s, b"a")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()
        with self.connect() as s:
            self.assertEqual(self.roundtrip(s, b"b"), b"b")

    def test_half_close_passes_on(self) -> None:
        with self.connect() as s:
            s.sendall(b"last words")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(100):
                got += chunk
            self.assertEqual(got, b"last words")

    def test_delay_holds_every_chunk_in_order(self) -> None:
        self.assertEqual(self.ctl("delay 300"), "ok open delay=300")
        with self.connect() as s:
            started = time.monotonic()
            # Many chunks in a row come back whole and in order, each held
            # 300 ms on the way up and 300 ms on the way back.
            data = b"".join(b"%06d" % i for i in range(20_000))
            self.assertEqual(self.roundtrip(s, data), data)
            self.assertGreaterEqual(time.monotonic() - started, 0.6)
            self.assertEqual(self.ctl("restore"), "ok open")
            self.assertEqual(self.roundtrip(s, b"fast"), b"fast")
        self.assertTrue(self.ctl("delay 60001").startswith("err "))
        self.assertTrue(self.ctl("delay x").startswith("err "))

    def test_unknown_command(self) -> None:
        self.assertTrue(self.ctl("dance").startswith("err "))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    unittest.main()
