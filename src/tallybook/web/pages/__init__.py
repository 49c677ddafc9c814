"""The server-rendered dashboard pages (one module per page)."""

from fastapi import APIRouter

router = APIRouter()
