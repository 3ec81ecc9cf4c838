"""Database tables. Importing this package registers every table on ``db.Base``."""

from imagetrail.store.models import auth, cloud, evidence, owners, pipeline, reconcile, registry, web_session  # noqa: F401
