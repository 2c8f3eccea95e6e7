# SPDX-License-Identifier: GPL-3.0-or-later
"""The helper process: runs core operations off Blender's main thread.

Blender does not support Python threads, so network and disk work happens
here, in a separate process started with Blender's own Python. Threads are
fine in this process (it never imports bpy): each request runs in its own
thread, so a long upload does not hold up a refresh. Requests and answers are
JSON lines on stdin/stdout (see protocol.py).
"""
from __future__ import annotations

import sys
import threading

from ..core import errors, operations
from ..core.client import Connection, ManagerClient
from . import protocol


class Helper:
    def __init__(self, out) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.aborted: set[int] = set()
        self.clients: dict[Connection, ManagerClient] = {}
        self.clients_lock = threading.Lock()

    def send(self, message: dict) -> None:
        data = protocol.encode(message)
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def client(self, connection: Connection) -> ManagerClient:
        """One session per Manager connection, reused across requests (keep-alive)."""
        with self.clients_lock:
            if connection not in self.clients:
                self.clients[connection] = ManagerClient(connection)
            return self.clients[connection]

    def run(self, message: dict) -> None:
        request_id = message.get("id", 0)

        def progress(data: dict) -> None:
            if request_id in self.aborted:
                raise errors.Aborted("Aborted")
            self.send(protocol.progress(request_id, data))

        progress.aborted = lambda: request_id in self.aborted   # long operations poll this between steps
        try:
            connection = Connection.from_dict(message.get("connection") or {})
            data = operations.run(str(message.get("op")), self.client(connection), message.get("args") or {},
                                  progress)
            self.send(protocol.result(request_id, data))
        except errors.FlamencoError as ex:
            self.send(protocol.error(request_id, ex.to_dict()))
        except Exception as ex:  # a bug: report it as a message, keep serving
            self.send(protocol.error(request_id, errors.FlamencoError(
                f"Internal error in Flamenco Panel's helper ({type(ex).__name__}: {ex})").to_dict()))
        finally:
            self.aborted.discard(request_id)

    def serve(self, stdin) -> None:
        for line in stdin:
            message = protocol.decode(line)
            if message is None:
                continue
            if message["type"] == "abort":
                self.aborted.add(message.get("id", 0))
            elif message["type"] == "request":
                threading.Thread(target=self.run, args=(message,), daemon=True).start()
        # stdin closed: Blender went away or asked us to stop.


def main() -> None:
    Helper(sys.stdout.buffer).serve(sys.stdin.buffer)


if __name__ == "__main__":
    main()
