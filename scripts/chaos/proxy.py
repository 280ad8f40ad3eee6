#!/usr/bin/env python3
"""A TCP proxy that can cut or stall the path between the app and one service.

    proxy.py --listen 127.0.0.1:P --upstream 127.0.0.1:U --control 127.0.0.1:C
    proxy.py ctl 127.0.0.1:C cut|stall|restore|status|"delay MS"

The proxy forwards every connection accepted on --listen to --upstream. A
line protocol on --control changes its state; every command is answered
`ok <state>\\n` (or `err <why>\\n`):

    cut      close every open connection at once (both sides) and refuse new
             ones: they are accepted and closed immediately.
    stall    keep every connection open but forward nothing in either
             direction. The proxy stops reading its sockets, so nothing is
             buffered beyond the kernel's socket buffers and TCP flow control
             pushes back on both peers. New connections are accepted, but
             the upstream connection is only made once the proxy is restored.
    restore  forward normally again; stalled connections resume where they
             stopped, connections accepted during a stall reach upstream.
             Any delay is dropped.
    delay MS forward every chunk MS milliseconds (0 to 60,000) after it
             arrived, in both directions, in order: a slow network or a slow
             service (MS = 0: no delay). Answered `ok <state> delay=MS`.
    status   the state alone.

The states are `open`, `cut` and `stall`. The proxy logs one line per state
change to stderr (and one when the upstream starts or stops refusing
connections). An upstream that refuses a connection, or resets it, only closes
the client side of that connection; the proxy itself never stops on a peer's
error. SIGINT/SIGTERM stop it.

Built on asyncio protocols rather than streams so that a stall really stops
reading (`transport.pause_reading()`), instead of letting a stream reader
keep filling a user-space buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import socket
import sys
import time

OPEN, CUT, STALL = "open", "cut", "stall"


def log(message: str) -> None:
    """One line on stderr, with a wall-clock time stamp."""
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    print(f"{stamp} proxy {message}", file=sys.stderr, flush=True)


def parse_addr(text: str) -> tuple[str, int]:
    """`host:port` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class Side(asyncio.Protocol):
    """One socket of a proxied connection (client or upstream)."""

    def __init__(self, conn: "Conn", name: str) -> None:
        self.conn = conn
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.write_blocked = False  # our transport's write buffer is full
        self.eof = False  # the peer sent FIN
        self.reading = True

    # asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.side_connected(self)

    def data_received(self, data: bytes) -> None:
        self.conn.forward(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.conn.half_closed(self)
        return True  # keep the transport: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.conn.close()

    def pause_writing(self) -> None:
        self.write_blocked = True
        self.conn.update_reading()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.conn.update_reading()

    # helpers ----------------------------------------------------------------

    def set_reading(self, on: bool) -> None:
        """Pauses or resumes reading this socket (idempotent)."""
        if self.transport is None or self.transport.is_closing() or self.eof or on == self.reading:
            return
        self.reading = on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


class Conn:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy
        self.client = Side(self, "client")
        self.upstream = Side(self, "upstream")
        self.connecting = False
        self.closed = False
        # Chunks held back by a delay, per receiving side: (due, data), in order.
        self.held: dict[str, collections.deque[tuple[float, bytes]]] = {
            "client": collections.deque(), "upstream": collections.deque()}

    def peer(self, side: Side) -> Side:
        return self.upstream if side is self.client else self.client

    def side_connected(self, side: Side) -> None:
        if side is self.client:
            # Nothing is read from the client before upstream is there.
            side.set_reading(False)
            if self.proxy.state == CUT:
                self.abort()
                return
            self.proxy.conns.add(self)
            if self.proxy.state == OPEN:
                self.connect_upstream()
        else:
            self.update_reading()

    def connect_upstream(self) -> None:
        """Starts the upstream connection (once)."""
        if self.connecting or self.closed:
            return
        self.connecting = True
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.upstream, host, port)
        except OSError as e:
            self.proxy.upstream_refused(e)
            self.abort()
            return
        self.proxy.upstream_accepted()
        if self.closed or self.proxy.state == CUT:
            self.abort()

    def forward(self, side: Side, data: bytes) -> None:
        peer = self.peer(side)
        if peer.transport is None or peer.transport.is_closing():
            return
        held = self.held[peer.name]
        if self.proxy.delay <= 0 and not held:
            peer.transport.write(data)
            return
        loop = asyncio.get_running_loop()
        held.append((loop.time() + self.proxy.delay, data))
        if len(held) == 1:
            loop.call_at(held[0][0], self.release, peer)

    def release(self, peer: Side) -> None:
        """Writes the chunks held for `peer` whose time has come, in order."""
        held = self.held[peer.name]
        loop = asyncio.get_running_loop()
        while held and held[0][0] <= loop.time():
            _, data = held.popleft()
            if peer.transport is not None and not peer.transport.is_closing():
                peer.transport.write(data)
        if held:
            loop.call_at(held[0][0], self.release, peer)

    def half_closed(self, side: Side) -> None:
        """`side` sent FIN: pass it on; close once both directions ended."""
        peer = self.peer(side)
        if peer.eof:
            self.close()
        elif peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()

    def update_reading(self) -> None:
        """A side reads only while the proxy is open and its peer can take data."""
        open_ = self.proxy.state == OPEN
        for side in (self.client, self.upstream):
            peer = self.peer(side)
            side.set_reading(open_ and peer.transport is not None and not peer.write_blocked)

    def close(self) -> None:
        """Closes both sides, after flushing what they were given."""
        if self.closed:
            return
        self.closed = True
        self.proxy.conns.discard(self)
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        """Closes both sides at once, dropping anything unsent."""
        self.closed = True
        self.proxy.conns.discard(self)
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.abort()


class Proxy:
    """The listener, its connections and the state."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.listen = listen
        self.upstream = upstream
        self.state = OPEN
        self.delay = 0.0  # seconds every chunk is held back
        self.conns: set[Conn] = set()
        self.refusing = False  # the upstream refused the last connection
        self.name = f"{listen[0]}:{listen[1]}->{upstream[0]}:{upstream[1]}"

    def set_state(self, new: str) -> str:
        old = self.state
        if new == old:
            return new
        self.state = new
        conns = list(self.conns)
        if new == CUT:
            for conn in conns:
                conn.abort()
            detail = f"closed {len(conns)} connections"
        elif new == STALL:
            for conn in conns:
                conn.update_reading()
            detail = f"holding {len(conns)} connections"
        else:
            for conn in conns:
                conn.connect_upstream()  # those accepted during a stall
                conn.update_reading()
            detail = f"resuming {len(conns)} connections"
        log(f"{self.name}: {old} -> {new} ({detail})")
        return new

    def upstream_refused(self, error: OSError) -> None:
        if not self.refusing:
            self.refusing = True
            log(f"{self.name}: upstream refuses connections ({error.strerror or error}); closing their clients")

    def upstream_accepted(self) -> None:
        if self.refusing:
            self.refusing = False
            log(f"{self.name}: upstream accepts connections again")

    def command(self, line: str) -> str:
        word = line.strip().lower()
        if word == "cut":
            return f"ok {self.set_state(CUT)}"
        if word == "stall":
            return f"ok {self.set_state(STALL)}"
        if word == "restore":
            self.delay = 0.0
            return f"ok {self.set_state(OPEN)}"
        if word == "status":
            return f"ok {self.state}"
        if word.startswith("delay"):
            ms = word[len("delay"):].strip()
            if not ms.isdigit() or int(ms) > 60_000:
                return "err delay takes milliseconds, 0 to 60000"
            self.delay = int(ms) / 1000
            log(f"{self.name}: delay {ms} ms")
            return f"ok {self.state} delay={ms}"
        return f"err unknown command {word!r} (cut, stall, restore, status, delay MS)"

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control connection: a command per line, an answer per line."""
        try:
            while line := await reader.readline():
                writer.write((self.command(line.decode(errors="replace")) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    proxy = Proxy(args.listen, args.upstream)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: Conn(proxy).client, *args.listen, reuse_address=True, backlog=1024
    )
    control = await asyncio.start_server(proxy.control, *args.control, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log(f"{proxy.name}: listening, control on {args.control[0]}:{args.control[1]}, state {proxy.state}")
    await stop.wait()
    listener.close()
    control.close()
    for conn in list(proxy.conns):
        conn.abort()
    log(f"{proxy.name}: stopped")


def ctl(address: tuple[str, int], command: str, timeout: float = 5.0) -> str:
    """Sends one command to a proxy's control port; returns its answer line."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            answer += chunk
    return answer.decode().strip()


def main(argv: list[str]) -> int:
    if argv[:1] == ["ctl"]:
        if len(argv) != 3:
            print("usage: proxy.py ctl HOST:PORT cut|stall|restore|status", file=sys.stderr)
            return 2
        try:
            answer = ctl(parse_addr(argv[1]), argv[2])
        except (OSError, argparse.ArgumentTypeError) as e:
            print(f"proxy.py ctl: {e}", file=sys.stderr)
            return 1
        print(answer)
        return 0 if answer.startswith("ok ") else 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=parse_addr, required=True, help="HOST:PORT the app connects to")
    parser.add_argument("--upstream", type=parse_addr, required=True, help="HOST:PORT of the service")
    parser.add_argument("--control", type=parse_addr, required=True, help="HOST:PORT of the control port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as e:  # e.g. a port already taken
        log(f"cannot start: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
