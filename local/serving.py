"""A loopback server running in a daemon thread: what the fake provider, the API Gateway emulator and the
moto server share."""
from __future__ import annotations

import threading
from typing import Any


class ServerThread:
    def __init__(self, server: Any, name: str):
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
