"""A request's JSON body as the routes that take raw JSON read it (reports, registry events)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from imagetrail import json_input


async def json_body(request: Request) -> Any:
    """The body (already bounded by server/limits.py) parsed: 400 when it is not JSON, 422 naming
    where it nests too deep or holds a lone surrogate."""
    raw = await request.body()
    try:
        return json_input.loads(raw)
    except json_input.JsonInputError as exc:
        raise HTTPException(422, str(exc)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"the body is not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
