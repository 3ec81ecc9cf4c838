"""Database tables. Importing this package registers every table on ``db.Base``."""

from imagetrail.server.models import auth, cloud, pipeline, registry  # noqa: F401
