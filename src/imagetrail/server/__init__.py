"""The ImageTrail backend: ingest, storage, trace, cloud-side joins, web explorer."""
