"""Secrets at rest: the vault (envelope encryption of admin keys), fingerprints, redaction.

Imports nothing but `tallybook.errors` and `tallybook.config`."""
