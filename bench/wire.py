"""A TCP relay on loopback that counts the bytes a server sends back: what a client really
fetched over the wire (a client's own counters miss what its library reads ahead)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class CountingRelay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.received = 0  # bytes from the server to clients
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self._lock:
                        self.received += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # shut down first: a close alone leaves the thread blocked in accept() accepting
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


@contextmanager
def counting_relay(endpoint: str) -> Iterator[CountingRelay]:
    """A relay to `endpoint` (http://host:port); its URL is http://127.0.0.1:<relay.port>."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    relay = CountingRelay(host, int(port))
    try:
        yield relay
    finally:
        relay.close()
