"""Prices any usage at its time: list prices from genai-prices' history, the organisation's own rules
(negotiated rates, discounts, commitments, markups) and ECB FX rates. May import ledger, money, config."""
