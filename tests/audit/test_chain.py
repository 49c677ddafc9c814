"""The audit chain: any edit, removal or reordering of an entry in the database fails `audit verify`,
which names the first bad entry; an untouched chain verifies."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tallybook.audit import record, subject
from tallybook.audit.log import GENESIS
from tallybook.audit.verify import verify
from tallybook.ledger import schema_ops as ops
from tallybook.ledger import store
from tests.cli.helpers import ok, run

N = 6


def seed(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        for i in range(1, N + 1):
            record(conn, org, "cli:alice", f"thing.changed{i}", "virtual_key", f"vk_{i}",
                   {"n": i, "customer": "globex", "who": subject("email", "bob@example.com")})


def sql(statement: str, **params: object) -> Callable[[sa.Connection], None]:
    return lambda conn: conn.execute(sa.text(statement), params)


def swap(a: int, b: int) -> Callable[[sa.Connection], None]:
    """Reorder: the two entries trade places (their seq numbers)."""
    def run_swap(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE audit_log SET seq = -1 WHERE seq = :a"), {"a": a})
        conn.execute(sa.text("UPDATE audit_log SET seq = :a WHERE seq = :b"), {"a": a, "b": b})
        conn.execute(sa.text("UPDATE audit_log SET seq = :b WHERE seq = -1"), {"b": b})
    return run_swap


def swap_contents(a: int, b: int) -> Callable[[sa.Connection], None]:
    """Reorder by moving every column but seq, as a careful forger would."""
    def run_swap(conn: sa.Connection) -> None:
        cols = [c.name for c in ops.audit_log.c if c.name != "seq"]
        rows = {r.seq: r for r in conn.execute(sa.select(ops.audit_log).where(ops.audit_log.c.seq.in_([a, b])))}
        for target, source in ((a, b), (b, a)):
            conn.execute(sa.update(ops.audit_log).where(ops.audit_log.c.seq == target)
                         .values({c: getattr(rows[source], c) for c in cols}))
    return run_swap


TAMPERING = [
    pytest.param(sql("UPDATE audit_log SET action = 'nothing.happened' WHERE seq = 3"), 3, "altered", id="edit-action"),
    pytest.param(sql("UPDATE audit_log SET details = :d WHERE seq = 1", d='{"n":99}'), 1, "altered", id="edit-details"),
    pytest.param(sql("UPDATE audit_log SET object_id = 'vk_x' WHERE seq = 6"), 6, "altered", id="edit-last"),
    pytest.param(sql("UPDATE audit_log SET ts = :ts WHERE seq = 2", ts="2020-01-01 00:00:00"), 2, "altered",
                 id="edit-ts"),
    pytest.param(sql("UPDATE audit_log SET org_id = 99 WHERE seq = 4"), 4, "altered", id="edit-org"),
    pytest.param(sql("DELETE FROM audit_log WHERE seq = 3"), 3, "missing", id="delete-middle"),
    pytest.param(sql("DELETE FROM audit_log WHERE seq = 1"), 1, "missing", id="delete-first"),
    pytest.param(sql("DELETE FROM audit_log WHERE seq = 6"), 6, "missing", id="delete-last"),
    pytest.param(sql("DELETE FROM audit_log WHERE seq >= 5"), 5, "missing", id="truncate-tail"),
    pytest.param(swap(2, 4), 2, "", id="reorder-seq"),
    pytest.param(swap_contents(3, 4), 3, "does not follow", id="reorder-contents"),
]


@pytest.mark.parametrize("tamper, bad, word", TAMPERING)
def test_tampering_fails_verify_and_names_the_first_bad_entry(
    engine: sa.Engine, tamper: Callable[[sa.Connection], None], bad: int, word: str,
) -> None:
    seed(engine)
    with engine.connect() as conn:
        assert verify(conn).ok
    with engine.begin() as conn:
        tamper(conn)
    with engine.connect() as conn:
        verdict = verify(conn)
    assert not verdict.ok
    assert verdict.bad_seq == bad, verdict
    assert word in (verdict.problem or "")
    assert f"entry {bad}" in (verdict.problem or "")


def test_an_untouched_chain_verifies_and_links_each_entry_to_the_one_before(engine: sa.Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        verdict = verify(conn)
        rows = conn.execute(sa.select(ops.audit_log).order_by(ops.audit_log.c.seq)).all()
    assert verdict.ok and verdict.entries == N
    assert [r.seq for r in rows] == list(range(1, N + 1))
    assert rows[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(rows))
    assert verdict.head_hash == rows[-1].hash


def test_personal_data_never_enters_the_hashed_columns(engine: sa.Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        text = " ".join(str(v) for r in conn.execute(sa.select(ops.audit_log)) for v in r)
    for personal in ("alice", "globex", "bob@example.com"):
        assert personal not in text


def test_secrets_in_details_are_withheld(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
        record(conn, org, "system:test", "provider.added", "provider", "openai",
               {"admin_key": "sk-admin-abcdefghijklmnop", "password": "hunter2", "note": "sk-proj-abcdefghijkl1234"})
    with engine.connect() as conn:
        text = conn.execute(sa.select(ops.audit_log.c.details)).scalar()
    assert "hunter2" not in text and "abcdefghijklmnop" not in text and "abcdefghijkl1234" not in text


def test_audit_verify_cli_exit_codes(cli_env: dict[str, str], engine: sa.Engine) -> None:
    seed(engine)
    good = ok("audit", "verify", "--format", "json", env=cli_env).json()
    assert good["ok"] is True and good["entries"] == N
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET action = 'x' WHERE seq = 5"))
    bad = run("audit", "verify", env=cli_env)
    assert bad.exit_code == 1
    assert "entry 5" in bad.stderr and bad.stderr.count("Error:") == 1


def test_audit_list_filters_and_shows_who(cli_env: dict[str, str], engine: sa.Engine) -> None:
    seed(engine)
    rows = ok("audit", "list", "--org", "acme", "--action", "thing.changed2", "--format", "json", env=cli_env).json()
    assert [r["action"] for r in rows] == ["thing.changed2"]
    assert rows[0]["actor"] == "cli:alice" and rows[0]["details"]["customer"] == "globex"
    everything = ok("audit", "list", "--org", "acme", "--action", "thing.*", "--format", "json", env=cli_env).json()
    assert len(everything) == N
    # reading the log is itself recorded, and the chain still holds
    again = ok("audit", "list", "--org", "acme", "--action", "audit.read", "--format", "json", env=cli_env).json()
    assert len(again) == 2
    assert ok("audit", "verify", "--format", "json", env=cli_env).json()["ok"] is True


def test_concurrent_writers_keep_one_gap_free_chain(engine: sa.Engine) -> None:
    import threading

    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with engine.begin() as conn:
                    record(conn, org, "system:test", "thing.changed", "thing", f"{n}-{i}")
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        verdict = verify(conn)
        ids = conn.execute(sa.select(ops.audit_log.c.object_id)).scalars().all()
    assert verdict.ok and verdict.entries == 60
    assert sorted(ids) == sorted(f"{n}-{i}" for n in range(4) for i in range(15))
