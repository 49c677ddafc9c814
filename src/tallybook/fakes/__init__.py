"""Faithful fake provider servers (OpenAI and Anthropic admin APIs) for the demo, tests and benchmarks.

They follow shared/reference/provider-apis.md: parameter validation, limits, pagination, error bodies, 429s."""
