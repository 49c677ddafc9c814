"""`POST /webhooks/stripe`: Stripe's webhook endpoint (no session or token: the signature is the auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tallybook.billing.webhook import BadSignature, handle
from tallybook.errors import BillingError

router = APIRouter(tags=["billing"])


@router.post("/webhooks/stripe", include_in_schema=False)
async def stripe_webhook(request: Request) -> JSONResponse:
    payload = await request.body()
    try:
        done = await run_in_threadpool(handle, request.app.state.engine, payload,
                                       request.headers.get("stripe-signature"),
                                       request.app.state.settings.stripe_webhook_secret)
    except BadSignature as e:
        return JSONResponse({"error": {"code": "bad_signature", "message": str(e)}}, status_code=400)
    except BillingError as e:  # no signing secret configured
        return JSONResponse({"error": {"code": "not_configured", "message": str(e)}}, status_code=503)
    return JSONResponse({"received": True, "result": done})
