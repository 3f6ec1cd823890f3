#!/usr/bin/env python3
"""A misbehaving OpenAI-compatible chat-completions server for gliznet's generate tests.

Usage: fault_server.py SCRIPT LOG
SCRIPT is a comma-separated list of behaviours, one per request in arrival order (the last one
repeats): ok, junk, prose, badcontent, 429, 500, truncated, badjson, slow, 401, 404, 
rejectschema (500 to response_format json_schema, ok otherwise), rejectformat (500 to any
response_format, ok in plain text), and the key-echoing ones: echokey (the API key in the
text), echokeylabel (the key as a label), echokeyescaped (the key in the text, its dashes
written as JSON escapes), echokeyneg (ok, and the key among the second pass's negatives),
500key (a 500 whose long message ends with the key). It binds 127.0.0.1 on a free port,
prints the port on the first line of stdout, and appends one JSON line per request to LOG.
With ok, a request for more hard negatives (gliznet's second pass) gets a list of them. It
stops after 10 minutes.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = sys.argv[1].split(",")
LOG = sys.argv[2]
LOCK = threading.Lock()
COUNT = [0]


def example(seed):
    return {
        "text": f"Report {seed}: the city council approved a new budget for public schools "
        "and road repairs this week.",
        "labels": ["politics", "local_government"],
        "not_labels": ["sports_news", "celebrity_gossip"],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def completion(self, content):
        return json.dumps({
            "id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80},
        })

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        with LOCK:
            i = COUNT[0]
            COUNT[0] += 1
        what = SCRIPT[min(i, len(SCRIPT) - 1)]
        fmt = request.get("response_format")
        auth = self.headers.get("Authorization", "")
        with LOCK, open(LOG, "a") as log:
            log.write(json.dumps({
                "i": i, "behaviour": what, "path": self.path,
                "response_format": fmt and fmt.get("type"),
                "format_has_schema": bool(fmt and ("schema" in fmt or "json_schema" in fmt)),
                "auth_sent": bool(auth), "seed": request.get("seed"),
            }) + "\n")
        seed = request.get("seed", i)
        good = json.dumps(example(seed))
        user = (request.get("messages") or [{}])[-1].get("content", "")
        key = auth[7:]
        if what == "echokeyneg" and user.startswith("Hard negatives"):
            self.send(200, self.completion(json.dumps({"not_labels": [key, "weather_report"]})))
        elif what == "echokeyneg":
            self.send(200, self.completion(good))
        elif what == "echokey":
            self.send(200, self.completion(json.dumps(dict(
                example(seed), text=f"The key is {key} and the council approved a budget."))))
        elif what == "echokeylabel":
            self.send(200, self.completion(json.dumps(
                dict(example(seed), labels=["politics", key]))))
        elif what == "echokeyescaped":
            text = f"The key is {key} and the council approved a budget.".replace("-", "\\u002d")
            self.send(200, self.completion(
                '{"text": "%s", "labels": ["politics"], "not_labels": ["sports_news"]}' % text))
        elif what == "500key":
            self.send(500, json.dumps({"error": {"message": "x" * 293 + " " + key}}))
        elif what == "ok" and user.startswith("Hard negatives"):
            # The second pass: one usable, one conflicting, one placeholder, one repeat, one more.
            self.send(200, self.completion(json.dumps({"not_labels": [
                "weather_report", "politics", "label3", "Weather-Report", "sports_betting"]})))
        elif what == "ok":
            self.send(200, self.completion(good))
        elif what == "junk":
            self.send(200, self.completion(json.dumps(
                {"text": "Some text about technology and phones.", "labels": ["label1"],
                 "not_labels": ["not_label2"]})))
        elif what == "prose":
            self.send(200, self.completion("Sure! Here is the example:\n```json\n" + good + "\n```"))
        elif what == "badcontent":
            self.send(200, self.completion("I cannot do that."))
        elif what == "429":
            self.send(429, '{"error": {"message": "rate limit reached"}}', [("Retry-After", "1")])
        elif what == "500":
            self.send(500, '{"error": {"message": "internal error"}}')
        elif what == "truncated":
            body = self.completion(good).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        elif what == "badjson":
            self.send(200, "<html>upstream proxy error</html>")
        elif what == "slow":
            time.sleep(4)
            try:
                self.send(200, self.completion(good))
            except OSError:
                pass
        elif what == "401":
            # Echo the key, as some servers do: the client must not repeat it.
            self.send(401, json.dumps({"error": {"message": f"Incorrect API key provided: {auth[7:]}"}}))
        elif what == "404":
            self.send(404, json.dumps({"error": {"message": f"model '{request.get('model')}' not found"}}))
        elif what == "rejectschema":
            if fmt and fmt.get("type") == "json_schema":
                self.send(500, '{"error": {"message": "json_schema is not supported"}}')
            else:
                self.send(200, self.completion(good))
        elif what == "rejectformat":
            if fmt:
                self.send(500, '{"error": {"message": "response_format is not supported"}}')
            else:
                self.send(200, self.completion("Here you go: " + good + " Hope it helps."))
        else:
            self.send(500, json.dumps({"error": {"message": f"unknown behaviour {what}"}}))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Timer(600, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
