"""A Flask app on a free loopback port, in a thread, for tests that need real HTTP."""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import make_server

__all__ = ["LiveServer"]


class LiveServer:
    """The app on a loopback port, in a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
