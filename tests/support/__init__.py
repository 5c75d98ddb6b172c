"""Builders shared by the tests: files as staff and students really produce them."""
