"""Signing in with email and password, rate-limited per (email, client address).

After `login_max_attempts` failures within `login_window_seconds`, that email from that address is
refused, even with the right password, until the oldest counted failure leaves the window; a success
clears the count. Attempts are kept in the database, so every web process sees the same count.
"""

from __future__ import annotations

from datetime import timedelta
from math import ceil

from sqlalchemy import Connection, delete, insert, select, update

from tallybook.config import get_settings
from tallybook.errors import InvalidCredentials, LoginThrottled
from tallybook.ledger.schema_access import login_attempts, users
from tallybook.ledger.store import utcnow
from tallybook.web.auth.passwords import hash_password, needs_rehash, verify_password

_WRONG = "Wrong email or password."


def authenticate(conn: Connection, email: str, password: str, client_ip: str, *,
                 max_attempts: int | None = None, window_seconds: int | None = None) -> int:
    """The user id for this email and password, or InvalidCredentials / LoginThrottled.

    Commit the connection even when this raises: the failed attempt must be counted."""
    settings = get_settings() if max_attempts is None or window_seconds is None else None
    limit = max_attempts or settings.login_max_attempts  # type: ignore[union-attr]
    window = timedelta(seconds=window_seconds or settings.login_window_seconds)  # type: ignore[union-attr]
    email = email.strip().lower()[:320]
    client_ip = (client_ip or "unknown")[:64]
    now = utcnow()
    a = login_attempts.c
    pair = (a.email == email) & (a.client_ip == client_ip)
    conn.execute(delete(login_attempts).where(pair, a.at < now - window))
    failures = sorted(r.at for r in conn.execute(select(a.at).where(pair, a.succeeded == 0)))
    if len(failures) >= limit:
        wait = failures[len(failures) - limit] + window - now
        raise LoginThrottled(f"Too many failed sign-ins for {email} from this address; "
                             f"try again in {ceil(wait.total_seconds() / 60)} minute(s).",
                             retry_after=max(1, ceil(wait.total_seconds())))
    row = conn.execute(select(users.c.id, users.c.password_hash, users.c.status)
                       .where(users.c.email == email)).first()
    ok = verify_password(row.password_hash if row else None, password) and row is not None
    if not ok or row is None or row.status != "active":
        conn.execute(insert(login_attempts).values(email=email, client_ip=client_ip, at=now, succeeded=0))
        raise InvalidCredentials(_WRONG)
    conn.execute(delete(login_attempts).where(pair))
    values: dict[str, object] = {"last_login_at": now}
    if needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password, check=False)
    conn.execute(update(users).where(users.c.id == row.id).values(**values))
    return int(row.id)
