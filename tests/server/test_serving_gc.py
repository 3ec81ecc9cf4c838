"""A serving process tunes the cyclic garbage collector at startup (``imagetrail.gc_pause.tune_for_serving``,
called by server/app.py's lifespan)."""

from __future__ import annotations

import gc

from imagetrail.gc_pause import SERVING_GC_THRESHOLDS


def test_a_started_app_freezes_its_startup_objects_and_collects_young_ones_in_larger_steps(make_client):
    before = gc.get_threshold()
    client = make_client()
    try:
        with client:  # runs the lifespan, as a serving process does
            assert gc.get_threshold() == SERVING_GC_THRESHOLDS
            assert gc.get_freeze_count() > 0
            assert client.get("/readyz").status_code == 200
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
