"""From the bytes of a query to the bytes of the reply: parsing, EDNS0, truncation (sans-IO).

Rules of this module: no sockets and no asyncio; `process` is a function of (bytes, snapshot,
transport) so the fuzz tests can throw anything at it. Whatever arrives, the outcome is one of
    None       drop it (too short to carry an ID, or a response rather than a query)
    Reply      bytes to send back; `cacheable` when they follow from the query bytes and the
               snapshot alone, so the server may replay them with another message ID
    Forward    not our zone: relay the query upstream
    Chase      an in-zone answer ending in an out-of-zone CNAME: the server asks upstream for
               the target and calls `finish_chase`
A packet that cannot be parsed gets FORMERR; an exception anywhere below becomes SERVFAIL for
that query, never a crash of the server.

Truncation is by whole records (RFC 2181 section 9): additional records go first without TC
(the answer is complete without them); if the answer section still does not fit, as many of
its records as fit are kept and TC is set, so the client retries over TCP and gets everything.
"""
from __future__ import annotations

import dataclasses
import logging

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from kubemu.dns import resolver
from kubemu.dns.snapshot import Snapshot

log = logging.getLogger("kubemu.dns")

UDP_DEFAULT = 512        # no EDNS: RFC 1035's limit
EDNS_ADVERTISED = 1232   # what we advertise: the DNS flag day 2020 size, safe on any path
TCP_MAX = 65535
MAX_VARIANTS = 8         # rotations of a multi-address answer kept per cache entry
BADVERS = 16

_ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)


@dataclasses.dataclass
class Reply:
    variants: tuple[bytes, ...]     # one, or rotations of the address records
    cacheable: bool = True

    @property
    def wire(self) -> bytes:
        return self.variants[0]


@dataclasses.dataclass
class Forward:
    pass


@dataclasses.dataclass
class Chase:
    record: DNSRecord
    target: DNSLabel
    qtype: int
    max_size: int


FORWARD = Forward()


def header_only(data: bytes, rcode: int) -> bytes:
    """A reply made of the query's header alone (ID, opcode, RD copied): FORMERR, NOTIMP."""
    flags = 0x80 | (data[2] & 0x79)   # QR, opcode, RD
    return bytes((data[0], data[1], flags, rcode & 0x0F)) + b"\x00" * 8


def process(data: bytes, snap: Snapshot, *, tcp: bool = False, recursion: bool = False
            ) -> Reply | Forward | Chase | None:
    if len(data) < 12 or data[2] & 0x80:
        return None
    try:
        req = DNSRecord.parse(data)
    except Exception:
        return Reply((header_only(data, RCODE.FORMERR),), cacheable=False)
    try:
        return _process(req, data, snap, tcp, recursion)
    except Exception:
        log.exception("failed to answer %r", data[:300])
        return Reply((header_only(data, RCODE.SERVFAIL),), cacheable=False)


def _process(req: DNSRecord, data: bytes, snap: Snapshot, tcp: bool, recursion: bool):
    h = req.header
    if h.opcode != 0:
        return Reply((header_only(data, RCODE.NOTIMP),))
    if len(req.questions) != 1:
        return Reply((header_only(data, RCODE.FORMERR),))
    opts = [rr for rr in req.ar if rr.rtype == QTYPE.OPT]
    if len(opts) > 1 or (opts and opts[0].rname.label != ()):
        return Reply((header_only(data, RCODE.FORMERR),))
    q = req.q
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, rd=h.rd, ra=int(recursion), cd=h.cd), q=q)
    max_size = TCP_MAX if tcp else UDP_DEFAULT
    opt_out = None
    if opts:
        opt = opts[0]
        version = (opt.ttl >> 16) & 0xFF
        do = "do" if (opt.ttl >> 15) & 1 else ""
        if version != 0:   # RFC 6891 6.1.3: BADVERS, and we speak version 0
            reply.add_ar(EDNS0(udp_len=EDNS_ADVERTISED, ext_rcode=BADVERS >> 4, flags=do))
            return Reply((bytes(reply.pack()),))
        if not tcp:
            max_size = max(UDP_DEFAULT, opt.rclass)
        opt_out = EDNS0(udp_len=EDNS_ADVERTISED, flags=do)
    if q.qclass not in (1, 255) or q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
        reply.header.rcode = RCODE.REFUSED
        return Reply((_pack(reply, opt_out, max_size),))
    ans = resolver.resolve(snap, q.qname, q.qtype)
    if ans.forward:
        if recursion:
            return FORWARD
        reply.header.rcode = RCODE.REFUSED
        return Reply((_pack(reply, opt_out, max_size),))
    reply.header.aa = int(ans.authoritative)
    reply.header.rcode = ans.rcode
    reply.rr = ans.answer
    reply.auth = ans.authority
    reply.ar = ans.additional
    if ans.chase is not None and recursion:
        if opt_out is not None:
            reply.ar = reply.ar + [opt_out]
        return Chase(reply, ans.chase, q.qtype, max_size)
    return Reply(_variants(reply, opt_out, max_size))


def _variants(reply: DNSRecord, opt: RR | None, max_size: int) -> tuple[bytes, ...]:
    """The reply, and for several address records also its rotations (round-robin order)."""
    rrs = reply.rr
    n = len(rrs)
    if n < 2 or any(rr.rtype not in _ADDRESS_TYPES for rr in rrs):
        return (_pack(reply, opt, max_size),)
    out = []
    for i in range(min(n, MAX_VARIANTS)):
        reply.rr = rrs[i:] + rrs[:i]
        out.append(_pack(reply, opt, max_size))
    reply.rr = rrs
    return tuple(out)


def _pack(reply: DNSRecord, opt: RR | None, max_size: int) -> bytes:
    """Pack within `max_size` bytes, truncating by whole records."""
    answer, authority, additional = reply.rr, reply.auth, reply.ar
    extra = [opt] if opt is not None else []
    reply.ar = additional + extra
    wire = reply.pack()
    if len(wire) <= max_size:
        return bytes(wire)
    reply.ar = extra   # without the additional section: still a complete answer, no TC
    wire = reply.pack()
    if len(wire) > max_size:
        reply.header.tc = 1
        reply.auth = []
        lo, hi = 0, len(answer)   # the largest prefix of the answer section that fits
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            reply.rr = answer[:mid]
            candidate = reply.pack()
            if len(candidate) <= max_size:
                best, lo = candidate, mid + 1
            else:
                hi = mid - 1
        if best is None:   # cannot happen for max_size >= 512; a header with TC, to be safe
            best = bytes(reply.pack()[:4]) + b"\x00" * 8
        wire = best
    reply.rr, reply.auth, reply.ar = answer, authority, additional
    return bytes(wire)


def finish_chase(chase: Chase, upstream_reply: bytes | None) -> bytes:
    """Append the upstream's answer for the CNAME target to the reply (best effort)."""
    reply = chase.record
    opt = None
    if reply.ar and reply.ar[-1].rtype == QTYPE.OPT:
        opt = reply.ar[-1]
        reply.ar = reply.ar[:-1]
    if upstream_reply is not None:
        try:
            up = DNSRecord.parse(upstream_reply)
            if up.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
                reply.rr = reply.rr + [rr for rr in up.rr if rr.rtype != QTYPE.OPT]
                reply.header.rcode = up.header.rcode
                if not up.rr:
                    reply.auth = list(up.auth)
        except Exception:
            pass
    return _pack(reply, opt, chase.max_size)


def chase_query(chase: Chase, msg_id: int) -> bytes:
    """The question to ask upstream for a CNAME target."""
    q = DNSRecord(DNSHeader(id=msg_id, rd=1), q=DNSQuestion(chase.target, chase.qtype))
    return bytes(q.pack())
