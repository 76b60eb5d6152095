"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers with recorded outputs.

Used by the benchmark (pipeline overhead without model time) and by the tests that need many records
to flow through every stage. It recognises which synthesis prompt a request carries (by the prompt's
opening words) and answers with one of the recorded outputs for that prompt, chosen by a hash of the
prompt, so the same request always gets the same answer. Recorded outputs: a JSON file
{kind: [output, ...]} for kinds instruction, scoring, answer, longform, department, and one list per
first-level department for the second-level prompt ("sub:<Department>").
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import departments

_KINDS = (
    ("You need to generate two questions", "instruction"),
    ("You need to evaluate the given query", "scoring"),
    ("You need to generate two different styles of answers", "answer"),
    ("You need to generate an answer based on the given problem", "longform"),
)


def prompt_kind(prompt: str) -> str:
    for opening, kind in _KINDS:
        if prompt.startswith(opening):
            return kind
    for parent in departments.FIRST_LEVEL:
        marker = departments.classification_template(parent).split("\n", 1)[0]
        if prompt.startswith(marker) and parent != "Other Departments":
            return f"sub:{parent}"
    if "Dermatology and Venereology:" in prompt:
        return "sub:Other Departments"
    return "department"


class ReplayServer:
    """`host` may be another loopback address (127.0.0.2): datatrove treats only localhost/127.0.0.1 as
    local, so requests there take its openai-client path. `authorizations` counts the Authorization
    headers received (the tests check which key a run sends)."""

    def __init__(
        self, recorded: dict[str, list[str]], port: int = 0, delay_s: float = 0.0, host: str = "127.0.0.1", serial: bool = False
    ):
        # serial: answer one request at a time, as `transformers serve` without continuous batching does
        self.recorded, self.delay_s, self.requests = recorded, delay_s, 0
        self.serial_lock = threading.Lock() if serial else None
        self.authorizations: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "replay", "object": "model"}]}).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                authorization = self.headers.get("Authorization", "")
                with server.lock:
                    server.authorizations[authorization] = server.authorizations.get(authorization, 0) + 1
                if server.serial_lock is None:
                    return self._send(200, json.dumps(server.answer(request)).encode())
                with server.serial_lock:
                    self._send(200, json.dumps(server.answer(request)).encode())

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the pipeline keeps many requests in flight; 5 (the default) refuses them

        self.httpd = Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, request: dict) -> dict:
        self.requests += 1
        prompt = request["messages"][-1]["content"]
        options = self.recorded[prompt_kind(prompt)]
        text = options[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(options)]
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        return {
            "id": "replay",
            "object": "chat.completion",
            "model": request.get("model", "replay"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()), "total_tokens": 0},
        }

    def __enter__(self) -> "ReplayServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def load_recorded(path: str | Path) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
