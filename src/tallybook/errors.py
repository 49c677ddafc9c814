"""The one exception tree. Every message says what was wrong and how to fix it.

    TallybookError
    ├── ConfigError            a setting is missing or malformed
    ├── VaultError             a secret cannot be decrypted (wrong master key)
    ├── LedgerError            the store refused a write or is not migrated
    ├── SpoolError             the gateway cannot write usage events to its spool (closed, disk full)
    ├── AccessError            a user, member, session or API token request is refused; carries `status`
    │   ├── InvalidCredentials 401: wrong email or password, or an unknown, expired or revoked token
    │   └── LoginThrottled     429: too many failed sign-ins; carries `retry_after` (seconds)
    ├── AlertError             an alert rule or channel is malformed, or a delivery failed
    ├── BillingError           a billing mapping is malformed, or Stripe refused or could not be reached
    ├── ImportFileError        a CSV import, identity map or seat file is malformed; carries `path`, `line`, `column` (exit 2)
    ├── PricingError           a pricing rule, rules file or FX file is malformed (exit 2)
    │   ├── RuleFileError      a rules file cannot be read; carries `path`, `line`, `column`
    │   └── FxError            no usable FX rate, or the rates cannot be fetched (exit 1)
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


class SpoolError(TallybookError):
    pass


class AlertError(TallybookError):
    exit_code = 2


class BillingError(TallybookError):
    pass


class ImportFileError(TallybookError):
    """`str(e)` reads `path: line N, column C: what was wrong`; nothing of the file was imported."""

    exit_code = 2

    def __init__(self, path: str, line: int | None, column: str | None, message: str) -> None:
        self.path, self.line, self.column = path, line, column
        where = ", ".join(p for p in (f"line {line}" if line else "", f"column {column!r}" if column else "") if p)
        super().__init__(f"{path}: {where}: {message}" if where else f"{path}: {message}")


class AccessError(TallybookError):
    """HTTP-facing: `status` is the answer the web layer gives (400 bad input, 404 unknown, 409 conflict)."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message)


class InvalidCredentials(AccessError):
    status = 401


class LoginThrottled(AccessError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PricingError(TallybookError):
    exit_code = 2


class RuleFileError(PricingError):
    """`str(e)` reads `path:line:column: what was wrong`, so editors jump to the spot."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path, self.line, self.column = path, line, column
        super().__init__(f"{path}:{line}:{column}: {message}")


class FxError(PricingError):
    exit_code = 1


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
