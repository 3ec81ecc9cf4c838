"""`imagetrail demo`: a sample map to explore (see sample.py)."""
