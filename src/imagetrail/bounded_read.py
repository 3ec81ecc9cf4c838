"""Reading an HTTP response body within a byte limit, so a registry or API cannot make us hold more."""

from __future__ import annotations

from typing import Any


class BodyTooLarge(ValueError):
    """The response declared or sent more bytes than the caller's limit."""


def read_within(response: Any, limit: int) -> bytes:
    """The body of a streamed ``requests`` response, refused (and the connection closed) as soon as
    its Content-Length or the bytes received pass ``limit``."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise BodyTooLarge(f"{declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > limit:
            response.close()
            raise BodyTooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
