"""Storage: the engine and sessions, the tables, bulk writes, and schema migrations."""
