"""A minimal DNS server for the lab, as Docker's embedded DNS is for compose: A records for each service name (every
replica's address, so Envoy's STRICT_DNS clusters see all of them) and each host name. Envoy's resolver (c-ares)
takes only the first /etc/hosts line of a name, hence a server rather than hosts files. UDP only, A only: AAAA
and other types get an empty answer, unknown names NXDOMAIN."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Mapping, Sequence

TTL_S = 5


def _parse_question(msg: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, end offset of the question) of a one-question query, or None."""
    if len(msg) < 12 or struct.unpack("!H", msg[4:6])[0] != 1:
        return None
    labels, i = [], 12
    while i < len(msg) and msg[i] != 0:
        n = msg[i]
        if n & 0xC0 or i + 1 + n > len(msg):
            return None
        labels.append(msg[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 5 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[i + 1 : i + 3])[0]
    return ".".join(labels).lower(), qtype, i + 5


def answer(msg: bytes, records: Mapping[str, Sequence[str]]) -> bytes | None:
    q = _parse_question(msg)
    if q is None:
        return None
    name, qtype, end = q
    addrs = records.get(name.rstrip("."))
    rcode = 0 if addrs is not None else 3  # NXDOMAIN
    answers = list(addrs) if addrs is not None and qtype == 1 else []
    flags = 0x8000 | 0x0400 | 0x0100 | 0x0080 | rcode  # response, authoritative, RD copied, RA
    header = msg[:2] + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0)
    body = msg[12:end]
    for addr in answers:  # name as a pointer to the question (offset 12)
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL_S, 4) + socket.inet_aton(addr)
    return header + body


class DnsServer:
    def __init__(self, bind_ip: str, records: Mapping[str, Sequence[str]]) -> None:
        self.records = {k.lower(): list(v) for k, v in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_ip, 53))
        self.sock.settimeout(0.5)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lab-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            reply = answer(msg, self.records)
            if reply is not None:
                self.queries += 1
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
