"""``/metrics``: Prometheus' text format, for a scraper with the metrics token or a user."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from backapp.api.deps import CtxDep, current_identity
from backapp.services import metrics
from backapp.services.context import AppContext

router = APIRouter(tags=["health"])


def _bearer_is_metrics_token(request: Request, ctx: AppContext) -> bool:
    expected = ctx.settings.metrics_token
    header = request.headers.get("authorization", "")
    if expected is None or not header.lower().startswith("bearer "):
        return False
    given = header[7:].strip().encode()
    return hmac.compare_digest(given, expected.get_secret_value().encode())


# Not in /api/openapi.json: Prometheus' format is not JSON; docs/MONITORING.md documents it.
@router.get("/metrics", response_class=Response, include_in_schema=False)
def get_metrics(ctx: CtxDep, request: Request) -> Response:
    """Runs, durations, bytes, last successes, queue and heartbeats in Prometheus' text
    format. Needs `Authorization: Bearer BACKAPP_METRICS_TOKEN`, a session or an API token."""
    if not _bearer_is_metrics_token(request, ctx):
        current_identity(request, ctx)  # raises AuthenticationError (401)
    return Response(metrics.render(ctx), media_type=metrics.CONTENT_TYPE)
