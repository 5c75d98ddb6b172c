"""Sandboxed auto-grader for notebook homework."""
