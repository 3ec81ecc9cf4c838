"""A thin client for the ImageTrail API, shared by the CLI commands.

Reads ``IMAGETRAIL_URL`` and ``IMAGETRAIL_API_KEY``. Errors are raised as
``ApiError`` with a message a person can act on; commands print it and exit 1.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import requests

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0


class ApiError(Exception):
    """The backend could not be reached or refused the request."""


class ApiClient:
    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT):
        self.url = (url or os.environ.get("IMAGETRAIL_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("IMAGETRAIL_API_KEY")
        self.timeout = timeout
        self._session = requests.Session()
        if self.api_key:
            self._session.headers["Authorization"] = f"Bearer {self.api_key}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self._session.request(method, self.url + path, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach the ImageTrail backend at {self.url} ({type(exc).__name__}); "
                           "check IMAGETRAIL_URL") from None
        if response.status_code == 401:
            raise ApiError(f"the backend at {self.url} refused the credentials: set IMAGETRAIL_API_KEY "
                           "to a key from 'imagetrail keys create'")
        if response.status_code >= 400:
            raise ApiError(f"{method} {path} failed with HTTP {response.status_code}: {_detail(response)}")
        if response.status_code == 204 or not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def get(self, path: str, params: Optional[Dict[str, Any]] = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:500]
