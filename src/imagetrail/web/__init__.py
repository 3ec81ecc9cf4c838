"""Server-rendered web explorer."""
