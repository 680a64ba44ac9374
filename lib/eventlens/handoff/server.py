"""The hand-off's own listener in the app's process: loopback only, one secret per start.

GET /v1/hello?nonce=N answers an HMAC of the nonce (the client's check that this is the server
the file names); POST /v1/jobs runs a command and streams its output as JSON lines ({"job"},
then {"out"} / {"err"} chunks, {} every second while quiet, and {"exit": code} last);
POST /v1/jobs/ID/interrupt is the sender's Ctrl-C. Anything without the secret gets a 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import queue
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from eventlens import location
from eventlens.handoff import jobs
from eventlens.handoff.published import HELLO, JOBS, Published, proof, publish, withdraw

log = logging.getLogger("eventlens")

HEARTBEAT_S = 1.0  # a quiet job still writes this often, so a sender that is gone is noticed
MAX_REQUEST_BYTES = 1 << 20


class HandoffServer:
    """Serves hand-off jobs for one store until closed; publishes itself beside the store."""

    def __init__(self, store_path: str, app_url: str | None = None) -> None:
        self.store = os.path.realpath(store_path)
        self.app_url = app_url
        self.published: Published | None = None
        self._jobs: dict[str, threading.Thread] = {}
        self._interrupted: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.handoff = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="handoff", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Published:
        jobs.install_routers()
        self._thread.start()
        self.published = publish(self.store, self.url, self.app_url)
        log.info("hand-off for %s on %s", self.store, self.url)
        return self.published

    def interrupt(self, thread: threading.Thread) -> None:
        """Stop a job as Ctrl-C would, once: a second KeyboardInterrupt could land in the
        middle of the job's own clean stop."""
        with self._lock:
            if thread in self._interrupted:
                return
            self._interrupted.add(thread)
        jobs.interrupt(thread)

    def close(self) -> None:
        if self.published is not None:
            withdraw(self.published)
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "eventlens-handoff"

    @property
    def handoff(self) -> HandoffServer:
        return self.server.handoff  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # nothing about requests reaches the app's log (bodies hold environments)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed():
            return
        if url.path != HELLO:
            self._answer(404, {"error": "no such route"})
            return
        nonce = parse_qs(url.query).get("nonce", [""])[0][:128]
        self._answer(
            200,
            {
                "proof": proof(self._secret(), nonce),
                "store": self.handoff.store,
                "pid": os.getpid(),
            },
        )

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._allowed():
            return
        if path == JOBS:
            self._run_job()
        elif path.startswith(JOBS + "/") and path.endswith("/interrupt"):
            thread = self.handoff._jobs.get(path[len(JOBS) + 1 : -len("/interrupt")])
            if thread is None:
                self._answer(404, {"error": "no such job"})
                return
            self.handoff.interrupt(thread)
            self._answer(202, {"interrupted": True})
        else:
            self._answer(404, {"error": "no such route"})

    def _secret(self) -> str:
        assert self.handoff.published is not None
        return self.handoff.published.secret

    def _allowed(self) -> bool:
        """Loopback peers with the secret only."""
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._answer(403, {"error": "the hand-off answers this machine only"})
            return False
        given = self.headers.get("Authorization", "")
        if self.handoff.published is None or not hmac.compare_digest(
            given.encode(), f"Bearer {self._secret()}".encode()
        ):
            self._answer(401, {"error": "missing or wrong secret"})
            return False
        return True

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _run_job(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_REQUEST_BYTES:
                raise ValueError("the request has no body, or one too big")
            request = jobs.JobRequest.from_json(json.loads(self.rfile.read(length)))
            if location.handoff_key(str(request.params.get("db"))) != self.handoff.store:
                raise ValueError(f"this app serves {self.handoff.store} only")
        except ValueError as exc:
            self._answer(400, {"error": str(exc)})
            return
        lines: queue.Queue[dict[str, Any]] = queue.Queue()
        job_id = secrets.token_hex(8)
        thread = jobs.start(
            request,
            emit=lambda stream, text: lines.put({stream: text}),
            done=lambda code: lines.put({"exit": code}),
        )
        self.handoff._jobs[job_id] = thread
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        sender_gone = not self._send({"job": job_id})
        try:
            while True:
                try:
                    line = lines.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    line = {}
                if not sender_gone and not self._send(line):
                    sender_gone = True  # stop the job as its Ctrl-C would; let it finish
                    self.handoff.interrupt(thread)
                if "exit" in line:
                    return
        finally:
            self.handoff._jobs.pop(job_id, None)
            self.handoff._interrupted.discard(thread)

    def _send(self, line: dict[str, Any]) -> bool:
        try:
            self.wfile.write(json.dumps(line).encode() + b"\n")
            self.wfile.flush()
            return True
        except OSError:
            return False
