"""A tiny reference package for the check engine's own tests (the pattern of hw2ref)."""
