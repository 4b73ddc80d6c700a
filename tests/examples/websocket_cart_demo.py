#!/usr/bin/env python3
"""Drives examples/websocket_cart with python3's standard library only.

Starts the server on a free port, loads the page (count 10, a session id, the
#count / #add / #remove elements), opens two WebSockets on /cart/status with a
minimal RFC 6455 client written here, and checks that each add / remove is
pushed to both as {"inventoryCount":"N"}, that a second add with one session is
a no-op, and that bad posts get 400. Then SIGTERM: the sockets get a close frame
(1001) and the server exits 0. Prints one line per check; the server is killed
on every path. Usage: websocket_cart_demo.py WEBSOCKET_CART
"""
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class WebSocket:
    """Just enough of a client: handshake, masked text frames out, frames in."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no upgrade: {head!r}")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def _need(self, n):
        while len(self.buffer) < n:
            self._fill()

    def frame(self):
        """The next (opcode, payload) from the server."""
        self._need(2)
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            self._need(4)
            (length,) = struct.unpack("!H", self.buffer[2:4])
            offset = 4
        elif length == 127:
            self._need(10)
            (length,) = struct.unpack("!Q", self.buffer[2:10])
            offset = 10
        self._need(offset + length)
        payload = self.buffer[offset:offset + length]
        self.buffer = self.buffer[offset + length:]
        return opcode, payload

    def count(self):
        opcode, payload = self.frame()
        if opcode != 1:
            raise RuntimeError(f"expected a text frame, got opcode {opcode}")
        return json.loads(payload)["inventoryCount"]

    def send_close(self, code):
        payload = struct.pack("!H", code)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)


def post(port, fields):
    data = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cart", data=data, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def check(what, ok):
    print(f"{what}: {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(1)


def main():
    server = subprocess.Popen([sys.argv[1], "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        check(f"listening line {line.strip()!r}", match is not None)
        port = int(match.group(1))

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            html = reply.read().decode()
        check("page has count 10", '<span id="count">10</span>' in html)
        check("page has the buttons", '<button id="add">' in html and '<button id="remove">' in html)
        session = re.search(r'const session = "([0-9a-f]+)"', html)
        check("page has a session id", session is not None)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            other = re.search(r'const session = "([0-9a-f]+)"', reply.read().decode())
        check("each load gets a fresh session", other is not None and other.group(1) != session.group(1))
        session = session.group(1)

        pages = [WebSocket(port, "/cart/status"), WebSocket(port, "/cart/status")]
        check("the count on connect", [p.count() for p in pages] == ["10", "10"])
        check("add is 200", post(port, {"action": "add", "session": session}) == 200)
        check("add pushed 9 to every page", [p.count() for p in pages] == ["9", "9"])
        check("a second add is 200", post(port, {"action": "add", "session": session}) == 200)
        check("another session adds", post(port, {"action": "add", "session": "other"}) == 200)
        # Had the second add counted, the pages would see 8 here and 7 next.
        check("only the new session's add pushed (8)", [p.count() for p in pages] == ["8", "8"])
        check("remove is 200", post(port, {"action": "remove", "session": session}) == 200)
        check("remove pushed 9", [p.count() for p in pages] == ["9", "9"])
        check("no session is 400", post(port, {"action": "add"}) == 400)
        check("an unknown action is 400", post(port, {"action": "steal", "session": session}) == 400)

        server.send_signal(signal.SIGTERM)
        for p in pages:
            opcode, payload = p.frame()
            check("SIGTERM sends close 1001", opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001)
            p.send_close(1001)
        status = server.wait(timeout=10)
        check(f"server exit={status}", status == 0)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
