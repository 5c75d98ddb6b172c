"""A corpus of hostile and broken submissions, as declarative tables (see docs/security.md)."""
