"""Password hashing with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes, 4 lanes)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tallybook.errors import AccessError

MIN_LENGTH = 10
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("tallybook-no-such-user")


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise AccessError(f"A password needs at least {MIN_LENGTH} characters.")


def hash_password(password: str, *, check: bool = True) -> str:
    if check:
        check_strength(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user has a password (SSO-only users never match)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
