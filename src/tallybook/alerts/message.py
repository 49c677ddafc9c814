"""An alert as the channels render it: a subject, the figures behind it, and a link to look closer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """What one firing of a rule says. `figures` hold strings (Decimal amounts already formatted with
    their currency and origin), so every channel shows the same numbers."""

    rule: str
    kind: str
    subject: str
    lines: tuple[str, ...]
    figures: dict[str, str] = field(default_factory=dict)
    link: str | None = None
    delivery_id: str = ""
    # Rendered when sent, for channels that carry files (email): "finance_report:<org_id>:YYYY-MM".
    attachment: str | None = None

    def to_json(self) -> str:
        data = {"rule": self.rule, "kind": self.kind, "subject": self.subject, "lines": list(self.lines),
                "figures": self.figures, "link": self.link}
        if self.attachment:
            data["attachment"] = self.attachment
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, delivery_id: str = "") -> Message:
        data: dict[str, Any] = json.loads(text)
        return cls(data["rule"], data["kind"], data["subject"], tuple(data["lines"]), data["figures"],
                   data.get("link"), delivery_id, data.get("attachment"))

    def plain_text(self) -> str:
        body = [self.subject, "", *self.lines]
        if self.link:
            body += ["", f"Open tallybook: {self.link}"]
        return "\n".join(body)


class DeliveryFailed(Exception):
    """A channel refused or could not take a message; `str(e)` says why, without the channel's secret."""
