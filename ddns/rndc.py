"""named's control channel (the protocol ``rndc`` speaks), without a process per call.

Starting the ``rndc`` binary costs 15-30 ms, most of a small zone's publish;
the protocol itself is a short signed exchange on a TCP connection:

- a message is ``length:u32, version:u32 = 1`` and then a table;
- a table is a run of ``keylen:u8, key, type:u8, len:u32, value`` entries,
  type 1 = binary (strings are binary), 2 = table, 3 = list;
- the top-level table holds ``_auth`` (the HMAC), ``_ctrl`` (serial, time,
  expiry, nonce) and ``_data`` (``type`` = the command text);
- the HMAC covers everything after the ``_auth`` entry; its base64 text sits
  in ``_auth.hsha`` after one algorithm byte, zero-padded to 88 bytes;
- the first message on a connection only obtains a nonce; the second,
  carrying ``_ctrl._nonce``, runs the command; the answer's ``_data.result``
  is "0" on success, with ``text`` / ``err``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_BINARY, _TABLE, _LIST = 1, 2, 3
_VERSION = 1
_HSHA_LENGTH = 88
# named's numbering of HMAC algorithms on the control channel
_ALGORITHMS = {"hmac-sha1": (161, hashlib.sha1), "hmac-sha224": (162, hashlib.sha224),
               "hmac-sha256": (163, hashlib.sha256), "hmac-sha384": (164, hashlib.sha384),
               "hmac-sha512": (165, hashlib.sha512)}

Table = dict[str, "bytes | Table"]


class RndcError(RuntimeError):
    """The control channel could not be reached, refused us, or the command failed."""


@dataclass(frozen=True)
class RndcKey:
    name: str
    algorithm: str
    secret: bytes

    @classmethod
    def from_file(cls, path: Path) -> "RndcKey":
        """Read a key file as rndc-confgen -a writes it."""
        text = Path(path).read_text()
        match = re.search(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\};', text, re.S)
        if not match:
            raise RndcError(f"{path}: no key statement")
        body = match.group(2)
        algorithm = re.search(r"algorithm\s+([\w-]+)\s*;", body)
        secret = re.search(r'secret\s+"([^"]+)"\s*;', body)
        if not algorithm or not secret:
            raise RndcError(f"{path}: key needs an algorithm and a secret")
        if algorithm.group(1).lower() not in _ALGORITHMS:
            raise RndcError(f"{path}: unsupported algorithm {algorithm.group(1)}")
        return cls(match.group(1), algorithm.group(1).lower(), base64.b64decode(secret.group(1)))


def encode_table(table: Table) -> bytes:
    out = bytearray()
    for key, value in table.items():
        name = key.encode()
        out += struct.pack("B", len(name)) + name
        if isinstance(value, dict):
            inner = encode_table(value)
            out += struct.pack(">BI", _TABLE, len(inner)) + inner
        else:
            out += struct.pack(">BI", _BINARY, len(value)) + value
    return bytes(out)


def decode_table(data: bytes) -> Table:
    table: Table = {}
    pos = 0
    while pos < len(data):
        (keylen,) = struct.unpack_from("B", data, pos)
        key = data[pos + 1: pos + 1 + keylen].decode()
        pos += 1 + keylen
        kind, length = struct.unpack_from(">BI", data, pos)
        pos += 5
        value = data[pos: pos + length]
        if len(value) != length:
            raise RndcError("truncated control message")
        pos += length
        table[key] = decode_table(value) if kind == _TABLE else value  # lists are not used by named's replies
    return table


def encode_message(key: RndcKey, ctrl: dict[str, bytes], data: dict[str, bytes]) -> bytes:
    """A signed message: ``_auth`` first, then ``_ctrl`` and ``_data``."""
    algorithm_id, digestmod = _ALGORITHMS[key.algorithm]
    body = encode_table({"_ctrl": ctrl, "_data": data})
    digest = base64.b64encode(hmac.new(key.secret, body, digestmod).digest())
    hsha = bytes([algorithm_id]) + digest.ljust(_HSHA_LENGTH, b"\0")
    auth = encode_table({"_auth": {"hsha": hsha}})
    payload = struct.pack(">I", _VERSION) + auth + body
    return struct.pack(">I", len(payload)) + payload


def decode_message(payload: bytes) -> Table:
    (version,) = struct.unpack_from(">I", payload, 0)
    if version != _VERSION:
        raise RndcError(f"control protocol version {version}")
    return decode_table(payload[4:])


@dataclass(frozen=True)
class RndcClient:
    """Runs commands on named's control channel, one short connection each."""

    server: str
    port: int
    key: RndcKey
    timeout: float = 10.0

    def command(self, text: str) -> str:
        """Run TEXT (e.g. ``reload example.org``); returns named's text, raises RndcError on failure."""
        try:
            with socket.create_connection((self.server, self.port), timeout=self.timeout) as sock:
                hello = self._exchange(sock, {}, {"type": b"null"})
                nonce = hello.get("_ctrl", {}).get("_nonce")
                if not isinstance(nonce, bytes):
                    raise RndcError("named sent no nonce (wrong key?)")
                reply = self._exchange(sock, {"_nonce": nonce}, {"type": text.encode()})
        except OSError as exc:
            raise RndcError(f"control channel {self.server}:{self.port}: {exc}") from exc
        data = reply.get("_data", {})
        result = data.get("result", b"0") if isinstance(data, dict) else b"?"
        message = (data.get("text") or data.get("err") or b"").decode(errors="replace").strip()
        if result != b"0":
            raise RndcError(f"{text}: {message or 'failed (result ' + result.decode(errors='replace') + ')'}")
        return message

    def _exchange(self, sock: socket.socket, ctrl: dict[str, bytes], data: dict[str, bytes]) -> Table:
        now = int(time.time())
        full_ctrl = {"_ser": str(secrets.randbelow(2**31)).encode(), "_tim": str(now).encode(),
                     "_exp": str(now + 60).encode(), **ctrl}
        sock.sendall(encode_message(self.key, full_ctrl, data))
        (length,) = struct.unpack(">I", _read(sock, 4))
        if length > 1 << 20:
            raise RndcError("control message too large")
        return decode_message(_read(sock, length))


def _read(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RndcError("named closed the control connection (bad key or not allowed?)")
        buf += chunk
    return bytes(buf)
