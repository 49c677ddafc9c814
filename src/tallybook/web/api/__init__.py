"""The REST API under /api/v1 (one module per resource), documented at /api/v1/openapi.json."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
