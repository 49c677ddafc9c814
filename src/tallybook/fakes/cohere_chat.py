"""A faithful fake of Cohere's v2 chat API, an upstream of the metering gateway (provider-apis.md §7.1).

    POST /v2/chat   non-stream {"id", "finish_reason", "message", "usage"}, or SSE events message-start,
                    content-start, content-delta..., content-end, message-end whose delta carries usage
    POST /compatibility/v1/chat/completions   the Compatibility API: OpenAI's shape, usage the billed
                    prompt/completion/total tokens (openai_chat.CompatibleChat)

`usage` = {"billed_units": {"input_tokens", "output_tokens"}, "tokens": {"input_tokens", "output_tokens"}}.
Billed input is `plan_reply`'s prompt tokens; `tokens.input_tokens` adds `template_tokens` for Cohere's
prompt template, as upstream where tokens >= billed. The ground truth counts billed units.
Any non-empty Bearer key is accepted; errors are {"id", "message"}.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tallybook.fakes.chat_upstreams import (
    ApiError,
    Served,
    ServedLog,
    Tokens,
    UpstreamFake,
    content_text,
    plan_reply,
    require,
    sse,
)
from tallybook.fakes.openai_chat import CompatibleChat


class CohereChatFake(UpstreamFake):
    provider = "cohere"
    request_id_header = "x-request-id"
    request_id_prefix = ""

    def __init__(self, *, chunk_delay: float = 0.0, template_tokens: int = 66,
                 served: ServedLog | None = None) -> None:
        super().__init__(chunk_delay=chunk_delay, served=served)
        self.template_tokens = template_tokens

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def error_body(self, status: int, message: str, param: str | None = None) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "message": message}

    def authenticate(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not key:
            raise ApiError(401, "no api key supplied")
        return key

    def routes(self) -> list[Route]:
        return [Route("/v2/chat", self.endpoint(self._chat), methods=["POST"]),
                CompatibleChat(self).route("/compatibility/v1/chat/completions", self.authenticate)]

    def _chat(self, request: Request, body: dict[str, Any], served: Served) -> Response:
        require(body, "model", str, "a string")
        messages = require(body, "messages", list, "an array of messages")
        reply = plan_reply([content_text(m.get("content")) for m in messages if isinstance(m, dict)],
                           body.get("max_tokens"))
        usage = {
            "billed_units": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
            "tokens": {"input_tokens": reply.prompt_tokens + self.template_tokens,
                       "output_tokens": reply.completion_tokens},
        }
        served.usage = usage
        served.tokens = Tokens(reply.prompt_tokens, reply.completion_tokens)
        finish = "MAX_TOKENS" if reply.truncated else "COMPLETE"
        message_id = str(uuid.uuid4())
        if not body.get("stream"):
            return JSONResponse({"id": message_id, "finish_reason": finish, "usage": usage, "message": {
                "role": "assistant", "content": [{"type": "text", "text": reply.text}]}})

        def events() -> Iterator[str]:
            yield sse({"id": message_id, "type": "message-start", "delta": {"message": {
                "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
                event="message-start")
            empty = {"message": {"content": {"type": "text", "text": ""}}}
            yield sse({"type": "content-start", "index": 0, "delta": empty}, event="content-start")
            for piece in reply.pieces:
                yield sse({"type": "content-delta", "index": 0,
                           "delta": {"message": {"content": {"text": piece}}}}, event="content-delta")
            yield sse({"type": "content-end", "index": 0}, event="content-end")
            yield sse({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}},
                      event="message-end")

        return self.stream(request, served, events(), "text/event-stream")
