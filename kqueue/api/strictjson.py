"""Request bodies parsed as standard JSON within kqueue's depth limit, or refused with a 422 saying why.

FastAPI parses a JSON body with `json.loads`, which takes NaN and Infinity, and which overflows
Python's recursion on a body nested about a thousand levels (answered 400 "There was an error
parsing the body", or a 500 further on for one just under that). A route of this class parses the
body itself: its depth is measured on the raw bytes first (no recursion), then it is parsed with
NaN and Infinity refused. The check runs where FastAPI parses bodies: after the middleware, before
the route's dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from kqueue.core.json_rules import MAX_JSON_DEPTH, TOO_DEEP, refuse_constant, text_too_deep

ENVELOPE_LEVELS = 1  # the request's own object around the payload


def body_problem(body: bytes) -> dict[str, Any] | None:
    """A FastAPI-shaped validation error for a body that is too deep, else None (parse it then)."""
    if text_too_deep(body, MAX_JSON_DEPTH + ENVELOPE_LEVELS):
        return {"loc": ["body", "payload"], "msg": f"payload is {TOO_DEEP}", "type": "json_too_deep"}
    return None


def parse_body(body: bytes) -> Any:
    """The body's JSON, or HTTPException 422 (too deep, NaN or Infinity); other bad JSON raises
    json.JSONDecodeError, which FastAPI answers with its own 422."""
    problem = body_problem(body)
    if problem is None:
        try:
            return json.loads(body, parse_constant=refuse_constant)
        except json.JSONDecodeError:
            raise
        except ValueError as exc:  # refuse_constant's
            problem = {"loc": ["body"], "msg": str(exc), "type": "json_not_standard"}
    raise HTTPException(422, [problem])


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_body(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def strict_post(router: APIRouter, path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.post(path, ...)` whose body is parsed as strict JSON (StrictJsonRoute)."""
    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=["POST"], route_class_override=StrictJsonRoute, **options)
        return endpoint

    return register
