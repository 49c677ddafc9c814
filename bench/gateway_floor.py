"""The gateway with its features off: the same app on the same server with metering, budgets and the
spool turned off, so `bench/gateway_load.py load` can measure what routing and relaying cost. This is
not the floor of a Python relay (it still parses, routes and runs ASGI's scope and messages): that is
`bench/gateway_load.py relay` (py-relay in bench/gateway_bench.py).

    TALLYBOOK_DATABASE_URL=... .venv/bin/python bench/gateway_floor.py --port 9402 [--no-meter]
    .venv/bin/python bench/gateway_load.py load --url http://127.0.0.1:9402 --key tb-... --rate 500

Needs a ledger with a provider (`tallybook providers add openai --base-url URL`) and a virtual key,
as `tallybook gateway` does. Without --no-meter every request is still metered into a spool that
drops the events (no limits, no write); with it, `record` and `settle` do nothing at all.
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

from tallybook.cli.gateway import load_upstreams
from tallybook.config import get_settings
from tallybook.gateway.app import create_app
from tallybook.gateway.keys import KeyCache
from tallybook.gateway.metering import load_tokenizer
from tallybook.gateway.server import listen, run
from tallybook.ledger.db import connect
from tallybook.pricing.catalog import default_catalog


class DroppingSpool:
    async def append(self, event: Any) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9402)
    parser.add_argument("--no-meter", action="store_true", help="skip metering too: routing and relaying only")
    args = parser.parse_args()
    settings = get_settings()
    engine = connect(settings.database_url)
    load_tokenizer()
    default_catalog()
    gc.collect()
    gc.freeze()  # as a gateway worker does before it serves
    app = create_app(keys=KeyCache(engine), limits=None, spool=DroppingSpool(),
                     upstreams=load_upstreams(settings, engine), settings=settings)
    if args.no_meter:
        async def record(*_args: Any, **_kwargs: Any) -> None:
            return None

        async def settle(*_args: Any) -> None:
            return None

        app.record, app.settle = record, settle  # type: ignore[method-assign,assignment]
    print(f"gateway floor on http://127.0.0.1:{args.port} ({'no metering' if args.no_meter else 'metering'})")
    run(app, listen("127.0.0.1", args.port))


if __name__ == "__main__":
    main()
