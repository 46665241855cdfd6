"""Latency-injecting HTTP/1.1 proxy in front of the local S3 server, for the benchmarks.

    python3 bench/proxy.py --upstream http://127.0.0.1:9100 [--port 0] [--latency-ms 20]
                           [--jitter-ms 5] [--port-file PATH]

Every request from a client is delayed by latency +- jitter (uniform, never below zero) and
then forwarded byte for byte: same request line, same headers (the Host header the client
signed stays as it is, so SigV4 signatures still verify at the server), same body framing
(Content-Length, chunked, aws-chunked). Responses come back unchanged. Each client connection
gets its own upstream connection and both are kept alive (HTTP/1.1), so a client's connection
pool behaves as it would against a real endpoint. An `Expect: 100-continue` is answered here
(the request is delayed as a whole) and the server's own interim 100 is dropped.

Requests are counted by kind (see `classify`), with the body bytes sent up (request bodies,
chunk payloads without framing) and down (response bodies). The proxy answers three paths of
its own, which are never forwarded or counted:

    GET  /__stats                  {"requests": {kind: n}, "bytes_up": n, "bytes_down": n, ...}
    POST /__reset                  zeroes the counters
    POST /__config?latency_ms=20&jitter_ms=5   changes the delay for requests that follow
    POST /__config?flip_percent=15             changes one byte of that share of object GET
                                               bodies (as a faulty network would; tests only)
    POST /__config?cut_percent=15              cuts that share of GET and LIST bodies (status
                                               200) in half, Content-Length to match (tests only)
    POST /__config?fail_percent=100            answers that share of requests 503 SlowDown
                                               itself, without forwarding them (tests only)
    POST /__config?ignore_if_none_match=1      answers 200 where the server refused a PUT
                                               If-None-Match with 412, as a server that ignores
                                               the condition would (tests only)

On start it prints `listening on PORT` (and writes PORT to --port-file), so --port 0 picks a
free port.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import urllib.parse

KINDS = ("get", "head", "list", "put", "put_if_absent", "delete", "other")
MAX_HEAD = 64 * 1024


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.requests = {kind: 0 for kind in KINDS}
        self.bytes_up = 0
        self.bytes_down = 0
        self.errors = 0  # responses with status >= 400 (a 404 on a probe is normal for some clients)
        self.flipped = 0  # object GET bodies delivered with one byte changed (flip_percent)
        self.cut = 0  # GET and LIST bodies delivered cut in half (cut_percent)
        self.failed = 0  # requests the proxy could not complete (upstream closed, bad framing)
        self.block_gets = 0  # GETs of s3vfs block objects (keys with a /blocks/ segment)

    def as_json(self, config):
        return {
            "requests": dict(self.requests),
            "total": sum(self.requests.values()),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "errors": self.errors,
            "failed": self.failed,
            "flipped": self.flipped,
            "cut": self.cut,
            "block_gets": self.block_gets,
            **config,
        }


def classify(method, target, headers):
    """The kind of an S3 request (path-style addressing: /bucket or /bucket/key)."""
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    path = parsed.path.lstrip("/")
    has_key = "/" in path and path.split("/", 1)[1] != ""
    if method == "HEAD":
        return "head"
    if method == "GET":
        if has_key:
            return "get"
        if path and ("list-type" in query or "prefix" in query or not query):
            return "list"
        return "other"
    if method == "PUT" and has_key:
        return "put_if_absent" if "if-none-match" in headers else "put"
    if method == "DELETE" and has_key:
        return "delete"
    if method == "POST" and "delete" in query:
        return "delete"
    return "other"


def parse_head(raw):
    """(first line, [(name, value)], {lowercase name: value}) of a request or response head."""
    lines = raw.decode("latin-1").split("\r\n")
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return lines[0], pairs, {name.lower(): value for name, value in pairs}


async def read_head(reader):
    """The bytes of one message head up to and including the blank line, or b'' at EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise ConnectionError("connection closed inside a message head") from error
        return b""
    except asyncio.LimitOverrunError as error:
        raise ConnectionError("message head too large") from error


async def read_body(reader, headers, until_eof=False):
    """(raw bytes as framed on the wire, payload byte count) of a message body."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts, payload = [], 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers (possibly none), then the final blank line.
                while True:
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts), payload
            chunk = await reader.readexactly(size + 2)
            parts.append(chunk)
            payload += size
    if "content-length" in headers:
        length = int(headers["content-length"])
        body = await reader.readexactly(length) if length else b""
        return body, length
    if until_eof:
        body = await reader.read()
        return body, len(body)
    return b"", 0


def set_content_length(head, length):
    """A response head with its Content-Length replaced."""
    lines = head.split(b"\r\n")
    for at, line in enumerate(lines):
        if line.lower().startswith(b"content-length:"):
            lines[at] = b"Content-Length: " + str(length).encode()
    return b"\r\n".join(lines)


class Proxy:
    def __init__(self, upstream, latency_ms, jitter_ms):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.flip_percent = 0.0
        self.cut_percent = 0.0
        self.fail_percent = 0.0
        self.ignore_if_none_match = False
        self.stats = Stats()
        self.random = random.Random()

    def config(self):
        return {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "flip_percent": self.flip_percent,
                "cut_percent": self.cut_percent, "fail_percent": self.fail_percent,
                "ignore_if_none_match": self.ignore_if_none_match}

    def delay(self):
        jitter = self.random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.latency_ms + jitter) / 1000.0

    async def answer_own(self, writer, method, target):
        parsed = urllib.parse.urlsplit(target)
        status, body = "200 OK", b""
        if parsed.path == "/__stats" and method == "GET":
            body = json.dumps(self.stats.as_json(self.config())).encode()
        elif parsed.path == "/__reset" and method == "POST":
            self.stats.reset()
            body = b"{}"
        elif parsed.path == "/__config" and method == "POST":
            query = urllib.parse.parse_qs(parsed.query)
            try:
                if "latency_ms" in query:
                    self.latency_ms = float(query["latency_ms"][0])
                if "jitter_ms" in query:
                    self.jitter_ms = float(query["jitter_ms"][0])
                if "flip_percent" in query:
                    self.flip_percent = float(query["flip_percent"][0])
                if "cut_percent" in query:
                    self.cut_percent = float(query["cut_percent"][0])
                if "fail_percent" in query:
                    self.fail_percent = float(query["fail_percent"][0])
                if "ignore_if_none_match" in query:
                    self.ignore_if_none_match = query["ignore_if_none_match"][0] == "1"
                body = json.dumps(self.config()).encode()
            except ValueError:
                status, body = "400 Bad Request", b'{"error": "latency_ms and jitter_ms are numbers"}'
        else:
            status, body = "404 Not Found", b'{"error": "unknown proxy path"}'
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        await writer.drain()

    async def handle(self, client_reader, client_writer):
        upstream = None
        try:
            while True:
                head = await read_head(client_reader)
                if not head:
                    return
                request_line, _, headers = parse_head(head)
                method, target, _version = request_line.split(" ", 2)
                if target.startswith("/__"):
                    await self.answer_own(client_writer, method, target)
                    continue
                if headers.get("expect", "").lower() == "100-continue":
                    client_writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await client_writer.drain()
                body, payload = await read_body(client_reader, headers)
                kind = classify(method, target, headers)
                await asyncio.sleep(self.delay())
                if self.fail_percent and self.random.uniform(0, 100) < self.fail_percent:
                    refusal = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                               b'<Message>injected by the proxy</Message></Error>')
                    client_writer.write(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                        b"Content-Length: " + str(len(refusal)).encode() + b"\r\n\r\n" + refusal
                    )
                    await client_writer.drain()
                    self.stats.requests[kind] += 1
                    self.stats.errors += 1
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        self.upstream_host, self.upstream_port, limit=MAX_HEAD
                    )
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                # Skip interim 1xx responses (the client got its 100 Continue from us).
                while True:
                    response_head = await read_head(up_reader)
                    if not response_head:
                        raise ConnectionError("upstream closed the connection before answering")
                    status_line, _, response_headers = parse_head(response_head)
                    status = int(status_line.split(" ", 2)[1])
                    if status >= 200:
                        break
                if self.ignore_if_none_match and kind == "put_if_absent" and status == 412:
                    # Drain the refusal, then answer as if the object had been written.
                    await read_body(up_reader, response_headers, until_eof=False)
                    status, response_head = 200, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                    response_headers = {"content-length": "0"}
                no_body = method == "HEAD" or status in (204, 304)
                closes = response_headers.get("connection", "").lower() == "close"
                if no_body:
                    response_body, down = b"", 0
                else:
                    response_body, down = await read_body(up_reader, response_headers, until_eof=True)
                if (kind == "get" and status == 200 and response_body and "content-length" in response_headers
                        and self.random.uniform(0, 100) < self.flip_percent):
                    changed = bytearray(response_body)
                    changed[self.random.randrange(len(changed))] ^= 0x01
                    response_body = bytes(changed)
                    self.stats.flipped += 1
                if (kind in ("get", "list") and status == 200 and len(response_body) > 1
                        and "content-length" in response_headers
                        and self.random.uniform(0, 100) < self.cut_percent):
                    response_body = response_body[: len(response_body) // 2]
                    response_head = set_content_length(response_head, len(response_body))
                    self.stats.cut += 1
                self.stats.requests[kind] += 1
                if kind == "get" and "/blocks/" in target:
                    self.stats.block_gets += 1
                self.stats.bytes_up += payload
                self.stats.bytes_down += down
                if status >= 400:
                    self.stats.errors += 1
                client_writer.write(response_head + response_body)
                await client_writer.drain()
                if closes or (not no_body and "content-length" not in response_headers
                              and "chunked" not in response_headers.get("transfer-encoding", "").lower()):
                    up_writer.close()
                    upstream = None
                    if closes:
                        return
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError, OSError) as error:
            self.stats.failed += 1
            print(f"proxy: connection dropped: {error!r}", file=sys.stderr, flush=True)
        finally:
            if upstream is not None:
                upstream[1].close()
            client_writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the S3 server, http://host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=5.0)
    parser.add_argument("--port-file", help="write the listening port here once ready")
    args = parser.parse_args()
    proxy = Proxy(args.upstream, args.latency_ms, args.jitter_ms)
    server = await asyncio.start_server(proxy.handle, args.host, args.port, limit=MAX_HEAD)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as file:
            file.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
