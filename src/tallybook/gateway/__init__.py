"""The inline metering gateway: an OpenAI- and Anthropic-compatible proxy that meters every request.

May import ledger, pricing, security, config and errors; knows nothing of analytics or the web."""
