"""Tokenizer estimates for streams that ended without usage: real BPE counts, offline."""

from __future__ import annotations

from tallybook.gateway.metering import count_tokens


def test_estimates_use_a_real_tokenizer_without_network() -> None:
    # cl100k_base: "hello world" is 2 tokens; the 4-characters fallback would say 3
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_tokens("<|endoftext|> is plain text here") > 3  # special tokens are not refused
