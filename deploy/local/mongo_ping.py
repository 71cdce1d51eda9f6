"""Send a MongoDB `ping` over the wire protocol (OP_MSG) using only the stdlib.

Used by ferretdb.sh as its readiness check so it does not depend on pymongo
being installed. Exit status 0 when the server answers {ok: 1}.

    python3 mongo_ping.py HOST PORT [TIMEOUT_S]
"""

import socket
import struct
import sys

OP_MSG = 2013


def _cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson(fields) -> bytes:
    body = b""
    for key, value in fields:
        if isinstance(value, int):
            body += b"\x10" + _cstring(key) + struct.pack("<i", value)
        else:
            raw = value.encode()
            body += b"\x02" + _cstring(key) + struct.pack("<i", len(raw) + 1) + raw + b"\x00"
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _ok(doc: bytes) -> float:
    """Read the top-level `ok` field of a BSON document (double/int32/int64)."""
    pos, end = 4, struct.unpack_from("<i", doc)[0] - 1
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end]
        pos = name_end + 1
        sizes = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
        if name == b"ok":
            if kind == 0x01:
                return struct.unpack_from("<d", doc, pos)[0]
            if kind == 0x10:
                return float(struct.unpack_from("<i", doc, pos)[0])
            if kind == 0x12:
                return float(struct.unpack_from("<q", doc, pos)[0])
            if kind == 0x08:
                return float(doc[pos])
        if kind in sizes:
            pos += sizes[kind]
        elif kind in (0x02, 0x0D, 0x0E):
            pos += 4 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x03, 0x04):
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            break
    return 0.0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def ping(host: str, port: int, timeout: float) -> bool:
    doc = _bson([("ping", 1), ("$db", "admin")])
    payload = struct.pack("<I", 0) + b"\x00" + doc
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, OP_MSG)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(header + payload)
        length, _, _, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        body = _recv_exact(sock, length - 16)
    if opcode != OP_MSG or body[4] != 0:
        return False
    return _ok(body[5:]) == 1.0


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    try:
        return 0 if ping(host, port, timeout) else 1
    except (OSError, ValueError, struct.error, IndexError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
