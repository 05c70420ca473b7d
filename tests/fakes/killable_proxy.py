"""A loopback TCP proxy that dies on cue: the AWS emulator going away mid-run, as a client sees it.

moto keeps its state in memory, so killing the emulator itself would also erase the evidence (and the raw data)
a fault test must inspect afterwards. Tests point the client at this proxy instead; once the client has sent
more than ``kill_after`` bytes (request bodies: uploads), the proxy closes every connection and stops listening,
so in-flight and later requests fail exactly as they would against a dead endpoint, while the emulator behind it
keeps its state.
"""

from __future__ import annotations

import socket
import threading


class KillableProxy:
    """A loopback TCP proxy in front of the emulator that dies (closes every connection and stops listening)
    once the client has sent more than ``kill_after`` bytes: the emulator going away mid-run, as the job sees it,
    while the emulator's state survives for inspection."""

    def __init__(self, upstream: tuple[str, int], kill_after: int):
        self.upstream, self.kill_after = upstream, kill_after
        self.sent = 0
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.dead.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            with self.lock:
                self.socks += [client, up]
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def _pump(self, src, dst, counted):
        try:
            while data := src.recv(65536):
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.kill_after
                    if over:
                        self.kill()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self):
        self.dead.set()
        self.server.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
