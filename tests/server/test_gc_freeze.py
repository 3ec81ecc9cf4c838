"""A serving process moves its startup objects out of the cyclic collector's reach (``gc.freeze``)."""

from __future__ import annotations

import gc


def test_startup_objects_are_frozen_once_the_app_starts(client):
    with client:  # runs the app's lifespan, as `imagetrail serve` does
        # every module, route and model loaded by now is frozen: a full collection no longer walks them
        assert gc.get_freeze_count() > 50_000
        assert client.get("/healthz").status_code == 200
