"""The fake Claude Code Analytics endpoint, served by the fake Anthropic Admin API (same host and key).

Follows shared/reference/provider-apis.md 3.4:

    GET /v1/organizations/usage_report/claude_code?starting_at=YYYY-MM-DD&limit=..&page=..

One UTC day per request (`starting_at` is a date, required); `limit` counts records, default 20,
at most 1000; `page` is the opaque cursor from `next_page`, with the same query repeated. A record is
one (day, actor, customer type, terminal, remote) with core metrics, tool actions and a per-model
breakdown whose `estimated_cost.amount` is a number of US cents.

The records of a day come from (seed, day) alone. `expected(start, end)` sums them directly, as
ground truth for tests: sessions, lines, commits, pull requests, tool actions, tokens and cents.
"""

from __future__ import annotations

import base64
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.requests import Request

# The errors are the Anthropic fake's own: `BadRequest` becomes its error envelope.
ORGANIZATION_ID = "dc9f6c26-b22c-4831-8d01-0446bada88f1"
TERMINALS = ("vscode", "iTerm.app", "tmux", "cursor", "ghostty")
TOOLS = ("edit_tool", "multi_edit_tool", "write_tool", "notebook_edit_tool")
# model -> (input, output, cache read, cache write) USD per million tokens: the vendor's estimate
MODELS: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {
    "claude-sonnet-4-20250514": (Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75")),
    "claude-opus-4-1-20250805": (Decimal(15), Decimal(75), Decimal("1.5"), Decimal("18.75")),
    "claude-haiku-4-5-20251001": (Decimal(1), Decimal(5), Decimal("0.1"), Decimal("1.25")),
}
MAX_LIMIT = 1000


class ClaudeCodeReport:
    """Seeded Claude Code activity of the fake organisation's users (subscription seats) and API keys.

    `users`: the organisation's emails; `api_keys`: names of API keys that run Claude Code headless
    (customer type `api`)."""

    def __init__(self, *, seed: int, now: datetime, data_start: datetime, users: list[str],
                 api_keys: list[str], bad_request: type[Exception]) -> None:
        self.seed = seed
        self.now = now
        self.data_start = data_start
        self.users = users
        self.api_keys = api_keys
        self.bad_request = bad_request  # the host fake's exception: (status, message)
        self._days: dict[date, list[dict[str, Any]]] = {}

    # -- the data ---------------------------------------------------------------------------------

    def records(self, day: date) -> list[dict[str, Any]]:
        """Every record of `day` in the order served. Data lags up to an hour: today's appear after 01:00."""
        if day not in self._days:
            midnight = datetime(day.year, day.month, day.day)
            if midnight < self.data_start or midnight + timedelta(hours=1) > self.now:
                return []
            self._days[day] = self._generate(day)
        return self._days[day]

    def _generate(self, day: date) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.seed}-claude-code-{day.isoformat()}")
        weekday = day.weekday() < 5
        out: list[dict[str, Any]] = []
        actors: list[tuple[dict[str, Any], str, str | None]] = [
            ({"type": "user_actor", "email_address": email}, "subscription", "team") for email in self.users
        ] + [({"type": "api_actor", "api_key_name": name}, "api", None) for name in self.api_keys]
        for actor, customer_type, subscription in actors:
            if rng.random() > (0.75 if weekday else 0.2):
                continue
            terminals = rng.sample(TERMINALS, rng.choice([1, 1, 2]))
            for terminal in terminals:
                remote = customer_type == "subscription" and rng.random() < 0.15
                out.append(self._record(rng, day, actor, customer_type, subscription, terminal, remote))
        return out

    def _record(self, rng: random.Random, day: date, actor: dict[str, Any], customer_type: str,
                subscription: str | None, terminal: str, remote: bool) -> dict[str, Any]:
        breakdown = []
        for model in rng.sample(list(MODELS), rng.choice([1, 1, 2])):
            tokens = {"input": rng.randint(2_000, 400_000), "output": rng.randint(500, 90_000),
                      "cache_read": rng.choice([0, rng.randint(10_000, 2_000_000)]),
                      "cache_creation": rng.choice([0, rng.randint(1_000, 120_000)])}
            prices = MODELS[model]
            dollars = sum((Decimal(tokens[k]) * p for k, p in zip(
                ("input", "output", "cache_read", "cache_creation"), prices, strict=True)), Decimal(0))
            cents = int((dollars / 10_000).to_integral_value())  # $/MTok x tokens / 1e6 x 100
            breakdown.append({"model": model, "tokens": tokens,
                              "estimated_cost": {"currency": "USD", "amount": cents}})
        sessions = rng.randint(1, 9)
        record: dict[str, Any] = {
            "date": f"{day.isoformat()}T00:00:00Z",
            "actor": actor,
            "organization_id": ORGANIZATION_ID,
            "customer_type": customer_type,
            "terminal_type": terminal,
            "is_remote": remote,
            "core_metrics": {
                "num_sessions": sessions,
                "lines_of_code": {"added": rng.randint(0, 400 * sessions), "removed": rng.randint(0, 150 * sessions)},
                "commits_by_claude_code": rng.randint(0, sessions + 2),
                "pull_requests_by_claude_code": rng.randint(0, 2),
            },
            "tool_actions": {tool: {"accepted": rng.randint(0, 40), "rejected": rng.randint(0, 6)}
                             for tool in TOOLS if rng.random() < 0.8},
            "model_breakdown": breakdown,
        }
        if customer_type == "subscription":
            record["subscription_type"] = subscription
        elif rng.random() < 0.5:
            record["subscription_type"] = None  # optional, null for api customers
        return record

    # -- ground truth for tests -------------------------------------------------------------------

    def expected(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Totals over the days starting in [start, end): metrics, tokens and cents, overall and per actor."""
        totals: dict[str, Any] = defaultdict(int)
        actors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        cents = Decimal(0)
        day = start.date()
        while datetime(day.year, day.month, day.day) < end:
            for r in self.records(day):
                who = r["actor"].get("email_address") or r["actor"]["api_key_name"]
                core = r["core_metrics"]
                figures = {
                    "sessions": core["num_sessions"], "lines_added": core["lines_of_code"]["added"],
                    "lines_removed": core["lines_of_code"]["removed"], "commits": core["commits_by_claude_code"],
                    "pull_requests": core["pull_requests_by_claude_code"],
                    "tool_accepted": sum(a["accepted"] for a in r["tool_actions"].values()),
                    "tool_rejected": sum(a["rejected"] for a in r["tool_actions"].values()),
                }
                for m in r["model_breakdown"]:
                    figures["input_tokens"] = figures.get("input_tokens", 0) + m["tokens"]["input"]
                    figures["output_tokens"] = figures.get("output_tokens", 0) + m["tokens"]["output"]
                    figures["cache_read_tokens"] = figures.get("cache_read_tokens", 0) + m["tokens"]["cache_read"]
                    figures["cache_write_tokens"] = (figures.get("cache_write_tokens", 0)
                                                     + m["tokens"]["cache_creation"])
                    cents += Decimal(m["estimated_cost"]["amount"])
                for name, value in figures.items():
                    totals[name] += value
                    actors[who][name] += value
            day += timedelta(days=1)
        return {**totals, "cost_cents": cents, "actors": {k: dict(v) for k, v in actors.items()}}

    # -- HTTP -------------------------------------------------------------------------------------

    def respond(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        if "starting_at" not in q:
            raise self.bad_request(400, "starting_at: field required")
        try:
            day = date.fromisoformat(q["starting_at"])
        except ValueError:
            day = None
        if day is None or len(q["starting_at"]) != 10:
            raise self.bad_request(400, f"starting_at: expected a date YYYY-MM-DD, got {q['starting_at']!r}")
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            raise self.bad_request(400, f"limit: must be an integer, got {q.get('limit')!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise self.bad_request(400, f"limit: must be between 1 and {MAX_LIMIT}")
        offset = 0
        if "page" in q:
            offset = self._decode(q["page"], day)
        records = self.records(day)
        chosen = records[offset:offset + limit]
        more = offset + limit < len(records)
        return {"data": chosen, "has_more": more, "next_page": self._encode(day, offset + limit) if more else None}

    @staticmethod
    def _encode(day: date, offset: int) -> str:
        return "page_" + base64.b64encode(f"{day.isoformat()}|{offset}".encode()).decode()

    def _decode(self, token: str, day: date) -> int:
        try:
            text = base64.b64decode(token.removeprefix("page_"), validate=True).decode()
            stamp, offset = text.split("|")
            if date.fromisoformat(stamp) == day and int(offset) > 0:
                return int(offset)
        except ValueError:
            pass
        raise self.bad_request(400, "page: invalid page token for this query")
