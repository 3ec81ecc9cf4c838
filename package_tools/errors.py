"""The one error type of the build tools: a message that tells the user what to fix."""


class BuildError(Exception):
    """A problem the user can fix; printed without a traceback."""
