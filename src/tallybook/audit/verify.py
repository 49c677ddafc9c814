"""`verify`: walk the chain from the first entry and name the first one that does not hold.

An entry is bad when its seq is not the next number (an entry before it was removed, or rows
were renumbered), its `prev_hash` is not the hash of the entry before it (reordered or spliced),
or its `hash` is not the SHA-256 of its own content (altered). The head row must name the last
entry, so removing the newest entries is caught too. Any one change, anywhere, fails the walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from tallybook.audit.log import GENESIS, HEAD_ID, entry_hash
from tallybook.ledger import schema_ops as ops

BATCH = 5000


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int  # entries checked
    head_hash: str  # the last good hash: keep it somewhere else to anchor the chain
    bad_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "head_hash": self.head_hash, "bad_seq": self.bad_seq,
                "problem": self.problem}


def verify(conn: Connection) -> Verdict:
    c = ops.audit_log.c
    expected, prev, checked = 1, GENESIS, 0
    last_seq = -(2**62)  # below any seq, so a renumbered row is still read
    while True:
        rows = conn.execute(select(ops.audit_log).where(c.seq > last_seq)
                            .order_by(c.seq).limit(BATCH)).all()
        if not rows:
            break
        for r in rows:
            if r.seq != expected:
                what = (f"entry {expected} is missing (the next entry is {r.seq})" if r.seq > expected
                        else f"entry {r.seq} is out of place (expected entry {expected})")
                return Verdict(False, checked, prev, expected, what)
            if r.prev_hash != prev:
                return Verdict(False, checked, prev, r.seq, f"entry {r.seq} does not follow entry {r.seq - 1}: its "
                               "prev_hash is not that entry's hash (reordered, replaced or spliced)")
            digest = entry_hash(r.seq, r.ts, r.org_id, r.actor, r.action, r.object_type, r.object_id, r.details,
                                r.prev_hash)
            if digest != r.hash:
                return Verdict(False, checked, prev, r.seq, f"entry {r.seq} was altered: its content does not "
                               "match its hash")
            prev, expected, checked, last_seq = r.hash, expected + 1, checked + 1, r.seq
    h = ops.audit_head.c
    head = conn.execute(select(h.seq, h.hash).where(h.id == HEAD_ID)).first()
    if head is None:
        if checked:
            return Verdict(False, checked, prev, None, "the chain's head row is missing")
        return Verdict(True, 0, GENESIS)
    if head.seq != checked:
        missing = checked + 1 if head.seq > checked else head.seq + 1
        return Verdict(False, checked, prev, missing, f"entry {missing} is missing: the head says the chain has "
                       f"{head.seq} entries, {checked} were found")
    if head.hash != prev:
        return Verdict(False, checked, prev, checked, f"entry {checked} is not the entry the head recorded "
                       "(the newest entry was replaced)")
    return Verdict(True, checked, prev)
