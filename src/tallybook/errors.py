"""The one exception tree. Every message says what was wrong and how to fix it.

    TallybookError
    ├── ConfigError            a setting is missing or malformed
    ├── VaultError             a secret cannot be decrypted (wrong master key)
    ├── LedgerError            the store refused a write or is not migrated
    └── ConnectorError         a provider sync failed; carries `provider`
        ├── AuthError          401: the admin key is wrong or revoked
        ├── PermissionDenied   403: the key lacks a permission
        ├── ProviderUnavailable  5xx, timeouts or connection errors after every retry
        ├── RateLimited        429 after every retry
        └── ResponseError      the provider answered something we cannot read faithfully
"""

from __future__ import annotations


class TallybookError(Exception):
    """Base of every error tallybook raises on purpose. `str(e)` is one line for the user."""

    exit_code = 1


class ConfigError(TallybookError):
    exit_code = 2


class VaultError(TallybookError):
    pass


class LedgerError(TallybookError):
    pass


class ConnectorError(TallybookError):
    def __init__(self, provider: str, message: str) -> None:
        self.provider = provider
        super().__init__(message)


class AuthError(ConnectorError):
    pass


class PermissionDenied(ConnectorError):
    pass


class ProviderUnavailable(ConnectorError):
    pass


class RateLimited(ConnectorError):
    pass


class ResponseError(ConnectorError):
    pass
