"""A raw-socket WebSocket server on 127.0.0.1:0 that misbehaves on purpose, for the recorder's tests.

Each accepted connection runs a *script* (a function of a :class:`Peer`) in its own thread.  The
script decides everything: whether to finish the HTTP upgrade, what frames to send (text, pings,
a header announcing a huge payload and then a trickle of bytes), how fast.  Nothing is mocked: the
recorder talks to a real socket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9


class PeerGone(Exception):
    """The client went away or the server is stopping: the script should end."""


class Peer:
    """One accepted connection, seen from the server side."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.request = b""
        self.received: list[bytes] = []  # client text messages (unmasked), in order
        self.reached = threading.Event()  # set by a script once it is in the state a test waits for

    # -- the HTTP upgrade ---------------------------------------------------------------------------
    def read_request(self) -> bytes:
        """Read the client's HTTP upgrade request (up to the blank line)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._recv(4096)
            data += chunk
        self.request = data
        return data

    def accept_key(self) -> str:
        key = next(line.split(b":", 1)[1].strip() for line in self.request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        return base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()

    def handshake(self) -> None:
        """A complete, well-formed upgrade."""
        self.read_request()
        self.send_raw(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Accept: {self.accept_key()}\r\n\r\n").encode())

    # -- frames -------------------------------------------------------------------------------------
    @staticmethod
    def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
        b1 = (0x80 if fin else 0) | opcode
        if length < 126:
            return struct.pack("!BB", b1, length)
        if length < 2**16:
            return struct.pack("!BBH", b1, 126, length)
        return struct.pack("!BBQ", b1, 127, length)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.send_raw(self.frame_header(opcode, len(payload), fin))
        self.send_raw(payload)  # not concatenated: a big frame is not copied on the server side

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_raw(self, data: bytes) -> None:
        if self.stopping.is_set():
            raise PeerGone()
        try:
            self.sock.sendall(data)
        except OSError:
            raise PeerGone() from None

    def read_messages(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """Read ``n`` client frames (masked, as clients send them) and return their payloads."""
        self.sock.settimeout(timeout)
        out = []
        for _ in range(n):
            b1, b2 = self._recv_exact(2)
            length = b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._recv_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._recv_exact(8))
            mask = self._recv_exact(4) if b2 & 0x80 else b"\0\0\0\0"
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._recv_exact(length)))
            if b1 & 0x0F == OP_TEXT:
                self.received.append(data)
            out.append(data)
        self.sock.settimeout(None)
        return out

    def pause(self, seconds: float) -> None:
        """Sleep, but end the script at once when the server stops."""
        if self.stopping.wait(seconds):
            raise PeerGone()

    def _recv(self, n: int) -> bytes:
        try:
            chunk = self.sock.recv(n)
        except OSError:
            raise PeerGone() from None
        if not chunk:
            raise PeerGone()
        return chunk

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            data += self._recv(n - len(data))
        return data


Script = Callable[[Peer], None]


class HostileServer:
    """``with HostileServer(script) as srv:`` serves ``srv.url`` until the block ends."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.peers: list[Peer] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            peers = list(self.peers)
        for p in peers:
            with contextlib.suppress(OSError):
                p.sock.shutdown(socket.SHUT_RDWR)
            p.sock.close()
        for t in self._threads:
            t.join(10)
        self._acceptor.join(10)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.peers)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)  # closing a listener does not wake accept(): poll the stop flag
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            peer = Peer(sock, self.stopping)
            with self._lock:
                self.peers.append(peer)
            t = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, peer: Peer) -> None:
        with contextlib.suppress(PeerGone):
            self.script(peer)
        # A script that returns leaves the connection open until the server stops (a silent peer).
        self.stopping.wait()
