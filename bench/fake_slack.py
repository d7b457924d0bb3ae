#!/usr/bin/env python3
"""A loopback stand-in for Slack's Web API, for bench/approval_latency.sh.

pg-airlock (slack-morphism, `api_url` pointed here) posts each approval
request with chat.postMessage and edits it with chat.update. This server
answers those calls as Slack does (`ok`, `channel`, `ts`) and remembers the
Approve button's value per request id, so the benchmark can click it:
GET /button?request=<id> -> {"value", "channel", "ts"}. GET /healthz for
readiness. Usage: fake_slack.py PORT
"""
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APPROVE = "airlock_approve"
lock = threading.Lock()
buttons = {}  # request id -> {"value", "channel", "ts"}
counter = [0]


def approve_value(blocks):
    for block in blocks or []:
        for el in block.get("elements") or []:
            if el.get("action_id") == APPROVE and el.get("value"):
                return el["value"]
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"ok": True})
        if url.path == "/button":
            rid = urllib.parse.parse_qs(url.query).get("request", [""])[0]
            with lock:
                b = buttons.get(rid)
            return self.reply(200, b) if b else self.reply(404, {"error": "no message for " + rid})
        self.reply(404, {"ok": False, "error": "unknown_method"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            return self.reply(200, {"ok": False, "error": "not_authed"})
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            for k in ("blocks", "attachments"):
                if isinstance(body.get(k), str):
                    body[k] = json.loads(body[k])
        method = self.path.rsplit("/", 1)[-1]
        if method == "chat.postMessage":
            with lock:
                counter[0] += 1
                ts = "1700000000.%06d" % counter[0]
            value = approve_value(body.get("blocks"))
            if value:
                rid = value.split(":", 1)[0]
                with lock:
                    buttons[rid] = {"value": value, "channel": "C0BENCH", "ts": ts}
            return self.reply(200, {"ok": True, "channel": "C0BENCH", "ts": ts,
                                    "message": {"ts": ts, "text": body.get("text", "")}})
        if method == "chat.update":
            return self.reply(200, {"ok": True, "channel": body.get("channel"), "ts": body.get("ts"),
                                    "message": {"text": body.get("text", "")}})
        if method == "chat.postEphemeral":
            return self.reply(200, {"ok": True, "message_ts": "1700000000.999999"})
        self.reply(200, {"ok": False, "error": "unknown_method"})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
