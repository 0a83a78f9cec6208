"""The ASGI app of ``thinkroute serve``: the OpenAI Files and Batches routes under ``/v1`` (a key each),
``/health`` and ``/openapi.json`` (no key). Its OpenAPI description is ``schemas/openapi.json``
(``schemas.openapi``), which schemathesis fuzzes the app from."""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import openapi
from workers.api import batches, files
from workers.api.context import ApiContext, context
from workers.api.middleware import Guard
from workers.api.problems import ApiError, json_response

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 2.0


async def health(request: Request) -> Response:
    """200 when Redis answers a PING within 2 s, else 503."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await context(request).store.redis.ping()
    except Exception as exc:
        log.warning("health: Redis did not answer: %s", exc)
        return json_response(openapi.Health(status="unavailable"), 503)
    return json_response(openapi.Health(status="ok"))


def openapi_route(document: dict[str, object]) -> Route:
    async def serve_document(request: Request) -> Response:
        return JSONResponse(document)

    return Route("/openapi.json", serve_document, methods=["GET"])


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals: no route (404) and a method the path has no route for (404 too, as OpenAI
    answers), a form it cannot parse (400)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return ApiError(404, f"Invalid URL ({request.method} {request.url.path})").response()
    return ApiError(exc.status_code, str(exc.detail)).response()


def build_app(ctx: ApiContext) -> Starlette:
    routes = [
        *files.ROUTES,
        *batches.ROUTES,
        Route("/health", health, methods=["GET"]),
        openapi_route(openapi.build()),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, api=ctx.settings.api, keys=ctx.keys, metrics=ctx.metrics)],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
    app.state.ctx = ctx
    return app
