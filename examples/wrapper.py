#!/usr/bin/env python3
"""A minimal self-hosted agent wrapper, standard library only.

It does what Leadtime's OpenClaw and Hermes connectors do, minus the agent: verify each webhook
(Leadtime signature, ISO timestamp within 300 s), answer 202, then report through the session API —
running, the prompt, a response activity, done — with idempotency keys derived from the webhook id,
so a redelivered webhook repeats the same calls and changes nothing.

    LEADTIME_BASE_URL=http://127.0.0.1:8080/api BOT_TOKEN=lt_pat_... WEBHOOK_SECRET=whsec_... \
        python3 examples/wrapper.py            # listens on 127.0.0.1:8787/leadtime/webhook

With --hold it only accepts each session (running, the prompt) and leaves it open, for you to
report on it by hand with curl.
"""
import datetime, hashlib, hmac, http.server, json, os, sys, threading, urllib.request

BASE = os.environ["LEADTIME_BASE_URL"].rstrip("/")
TOKEN = os.environ["BOT_TOKEN"]
SECRET = os.environ["WEBHOOK_SECRET"]
PORT = int(os.environ.get("PORT", "8787"))
HOLD = "--hold" in sys.argv[1:]
seen = set()


def call(method, path, body):
    request = urllib.request.Request(f"{BASE}/public{path}", method=method, data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def work(webhook_id, event):
    session = event["agentRunId"]
    task = event["context"]["task"]
    call("PATCH", f"/agent-sessions/{session}/status",
         {"status": "running", "message": "The example wrapper accepted the Leadtime session",
          "idempotencyKey": f"status-running-{webhook_id}"})
    call("POST", f"/agent-sessions/{session}/activities",
         {"activityType": "prompt", "body": event["context"]["promptContext"], "providerEventId": webhook_id,
          "providerEventType": event["eventType"], "idempotencyKey": f"webhook-accepted-{webhook_id}"})
    if HOLD:
        print(f"session {session} is running; report on it by hand", flush=True)
        return
    call("POST", f"/agent-sessions/{session}/activities",
         {"activityType": "response", "body": f"Hello from the example wrapper: I read #{task['shortNumber']} \"{task['title']}\".",
          "idempotencyKey": f"example-response-{webhook_id}"})
    call("PATCH", f"/agent-sessions/{session}/status",
         {"status": "done", "message": "Finished", "idempotencyKey": f"status-done-{webhook_id}"})
    print(f"session {session} done", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if self.path != "/leadtime/webhook":
            return self.answer(404, {"ok": False})
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        webhook_id = self.headers.get("Leadtime-Webhook-Id", "")
        timestamp = self.headers.get("Leadtime-Webhook-Timestamp", "")
        signature = self.headers.get("Leadtime-Signature", "")
        try:
            sent = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            return self.answer(401, {"ok": False, "error": "bad timestamp"})
        if abs((datetime.datetime.now(datetime.timezone.utc) - sent).total_seconds()) > 300:
            return self.answer(401, {"ok": False, "error": "stale timestamp"})
        expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        first_v1 = next((p[3:] for p in signature.split(",") if p.startswith("v1=")), "")
        if not hmac.compare_digest(expected, first_v1):
            return self.answer(401, {"ok": False, "error": "bad signature"})
        if webhook_id in seen:
            return self.answer(202, {"ok": True, "duplicate": True})
        seen.add(webhook_id)
        event = json.loads(raw)
        threading.Thread(target=work, args=(webhook_id, event), daemon=True).start()
        self.answer(202, {"ok": True, "runId": event["agentRunId"]})


print(f"example wrapper listening on http://127.0.0.1:{PORT}/leadtime/webhook", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
