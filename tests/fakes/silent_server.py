"""A stand-in for a service that accepts connections and never answers (a hung LLM server, a
stuck Docker daemon, a GCS that takes the TCP handshake and nothing more). Loopback only.

Used as a context manager: ``with SilentServer() as server: ... server.port``. Every accepted
connection is held open, unread, until the server closes, so the client waits on a live socket:
the case a TCP probe cannot tell from a healthy service.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["SilentServer"]


class SilentServer:
    def __init__(self, host: str = "127.0.0.1", *, trickle_s: float | None = None) -> None:
        """``trickle_s``: instead of silence, answer HTTP headers and then one byte of body every
        ``trickle_s`` seconds, for ever: a reply no read timeout ends."""
        self.host = host
        self.trickle_s = trickle_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)   # held open, never read nor written
            if self.trickle_s:
                threading.Thread(target=self._trickle, args=(conn,), name="silent-server-trickle", daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)  # the request (headers and a small body arrive together on loopback)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n")
            while not self._stop.wait(self.trickle_s):
                conn.sendall(b" ")
        except OSError:
            return

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()
