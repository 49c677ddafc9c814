"""Envelope encryption of provider admin keys (AES-256-GCM, `cryptography`).

Each secret gets its own random data key; the data key is wrapped by the master
key. A sealed secret is `tbv1:` + base64(kek_id | nonce | wrapped data key | nonce | ciphertext),
with the organisation and purpose bound in as associated data, so a ciphertext
copied to another row or organisation does not decrypt.

The master key comes from TALLYBOOK_MASTER_KEY (base64 of 32 bytes), or from a
key file created on first use with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tallybook.config import Settings, get_settings
from tallybook.errors import ConfigError, VaultError

PREFIX = "tbv1:"
KEY_BYTES = 32
NONCE_BYTES = 12
KEK_ID_BYTES = 8


class Vault:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ConfigError("The master key must be 32 bytes (base64 of 32 random bytes).")
        self._kek = AESGCM(master_key)
        self._derive_base = hmac.new(master_key, b"tallybook-derive", hashlib.sha256).digest()
        self.kek_id = hashlib.sha256(b"tallybook-kek" + master_key).digest()[:KEK_ID_BYTES]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Vault:
        settings = settings or get_settings()
        if settings.master_key:
            return cls(_decode_master_key(settings.master_key))
        return cls(_load_or_create_key_file(Path(settings.master_key_file)))

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose` (e.g. "web-session"), derived from the master key, so signing
        keys need no secret of their own and every process sharing the master key agrees on them."""
        return hmac.new(self._derive_base, purpose.encode(), hashlib.sha256).digest()

    def seal(self, secret: str, *, context: str) -> str:
        """Encrypt `secret`; `context` (e.g. "org:1/connection:openai") must be given again to open it."""
        data_key = AESGCM.generate_key(bit_length=256)
        n1, n2 = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        aad = context.encode()
        wrapped = self._kek.encrypt(n1, data_key, aad)
        body = AESGCM(data_key).encrypt(n2, secret.encode(), aad)
        return PREFIX + base64.b64encode(self.kek_id + n1 + wrapped + n2 + body).decode()

    def open(self, sealed: str, *, context: str) -> str:
        if not sealed.startswith(PREFIX):
            raise VaultError("A stored secret is not in the vault format; re-enter it with `tallybook connect`.")
        raw = base64.b64decode(sealed[len(PREFIX):])
        kek_id, rest = raw[:KEK_ID_BYTES], raw[KEK_ID_BYTES:]
        if kek_id != self.kek_id:
            raise VaultError(
                "A stored admin key was sealed with a different master key. Set TALLYBOOK_MASTER_KEY "
                "(or TALLYBOOK_MASTER_KEY_FILE) to the key used when it was stored, or reconnect the provider."
            )
        n1, rest = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        wrapped, rest = rest[: KEY_BYTES + 16], rest[KEY_BYTES + 16 :]
        n2, body = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            data_key = self._kek.decrypt(n1, wrapped, context.encode())
            return AESGCM(data_key).decrypt(n2, body, context.encode()).decode()
        except InvalidTag:
            raise VaultError("A stored admin key failed its integrity check; reconnect the provider.") from None


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _decode_master_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            "TALLYBOOK_MASTER_KEY must be base64 of 32 random bytes; make one with "
            "`python -c \"import os,base64;print(base64.b64encode(os.urandom(32)).decode())\"`."
        )
    return key


def _load_or_create_key_file(path: Path) -> bytes:
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"The master key file {path} is readable by others (mode {mode:o}); run chmod 600 {path}.")
        return _decode_master_key(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_master_key() + "\n")
    return _decode_master_key(path.read_text())
