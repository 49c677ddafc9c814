"""Admin keys at rest: envelope encryption, key files, fingerprints, redaction."""

from __future__ import annotations

import os
import stat

import pytest

from tallybook.config import Settings
from tallybook.errors import ConfigError, VaultError
from tallybook.security.redaction import fingerprint, redact
from tallybook.security.vault import Vault, generate_master_key

SECRET = "sk-admin-Zq8v1cT9PLANTEDsecretvalue-a1b2"


def test_sealed_secret_opens_only_with_its_context_and_key() -> None:
    vault = Vault.from_settings(Settings(master_key=generate_master_key()))
    sealed = vault.seal(SECRET, context="org:1/connection:openai")
    assert SECRET not in sealed and "a1b2" not in sealed
    assert vault.open(sealed, context="org:1/connection:openai") == SECRET
    with pytest.raises(VaultError):
        vault.open(sealed, context="org:2/connection:openai")
    other = Vault.from_settings(Settings(master_key=generate_master_key()))
    with pytest.raises(VaultError, match="different master key"):
        other.open(sealed, context="org:1/connection:openai")


def test_each_seal_is_different() -> None:
    vault = Vault.from_settings(Settings(master_key=generate_master_key()))
    assert vault.seal(SECRET, context="c") != vault.seal(SECRET, context="c")


def test_key_file_is_created_once_with_mode_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cfg" / "master.key"
    first = Vault.from_settings(Settings(master_key_file=str(path)))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = Vault.from_settings(Settings(master_key_file=str(path)))
    assert second.open(first.seal(SECRET, context="c"), context="c") == SECRET


def test_world_readable_key_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "master.key"
    path.write_text(generate_master_key())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Vault.from_settings(Settings(master_key_file=str(path)))


def test_bad_master_key_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError, match="32 random bytes"):
        Vault.from_settings(Settings(master_key="not-base64!"))


@pytest.mark.parametrize("secret, shown", [
    ("sk-admin-abcdefghijklmnopa1b2", "sk-admin-...a1b2"),
    ("sk-ant-admin01-abcdefghijklmnop9z9z", "sk-ant-admin01-...9z9z"),
    ("something-else-entirely-wxyz", "...wxyz"),
    ("short", "..."),
])
def test_fingerprint_shows_kind_and_last_four(secret: str, shown: str) -> None:
    assert fingerprint(secret) == shown


def test_redact_scrubs_given_and_key_shaped_secrets() -> None:
    text = f"failed with {SECRET} and sk-proj-ABCDEFGHIJKLMNOP1234"
    cleaned = redact(text, SECRET)
    assert SECRET not in cleaned and "ABCDEFGHIJKLMNOP" not in cleaned
    assert "sk-admin-...a1b2" in cleaned


def test_derived_keys_depend_on_master_key_and_purpose() -> None:
    one, two = Vault(os.urandom(32)), Vault(os.urandom(32))
    assert one.derive_key("web-session") == one.derive_key("web-session")  # every process agrees
    assert len(one.derive_key("web-session")) == 32
    assert one.derive_key("web-session") != one.derive_key("web-csrf")
    assert one.derive_key("web-session") != two.derive_key("web-session")
