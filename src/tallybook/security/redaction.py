"""Showing secrets without revealing them: fingerprints and redaction of text."""

from __future__ import annotations

import re

# Longest first, so "sk-ant-admin01-" wins over "sk-".
KNOWN_PREFIXES = ("sk-ant-admin01-", "sk-ant-api03-", "sk-admin-", "sk-proj-", "sk-ant-", "crsr_", "key_", "sk-")

# Strings shaped like provider keys, for scrubbing logs and error text we did not write.
KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|crsr_[A-Za-z0-9]{8,}|key_[a-f0-9]{32,})")


def fingerprint(secret: str) -> str:
    """`sk-admin-...a1b2`: the key's kind and last four characters, never more."""
    secret = secret.strip()
    prefix = next((p for p in KNOWN_PREFIXES if secret.startswith(p)), "")
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"{prefix}...{tail}"


def redact(text: str, *secrets: str) -> str:
    """`text` with each given secret, and anything shaped like a provider key, replaced by its fingerprint."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, fingerprint(secret))
    return KEY_PATTERN.sub(lambda m: fingerprint(m.group(0)), text)
