"""Database tables. Importing this package registers every table on ``db.Base``."""

from imagetrail.server.models import auth, cloud, pipeline, reconcile  # noqa: F401
