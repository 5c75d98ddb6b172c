"""A table of a TOML file read key by key: each value checked for its type and range as it is
read, every error naming its place (``items[3].params.rtol``), and keys nobody read refused."""
from __future__ import annotations

from typing import Any

from grader.items import RubricError

REQUIRED = object()


class Table:
    """A TOML table that remembers where it is, so errors can name the full key."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise RubricError(f"{where}: expected a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, types: tuple[type, ...], what: str, default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is REQUIRED:
                raise RubricError(f"{self.where}.{key}: missing; expected {what}")
            return default
        value = self.data[key]
        # bool is an int subclass; a number field must not accept true/false.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise RubricError(f"{self.where}.{key}: expected {what}, got {value!r}")
        return value

    def str(self, key: str, default: Any = None) -> str:
        return self._get(key, (str,), "a string", default)

    def num(self, key: str, default: Any = None, minimum: float = 0) -> float:
        value = self._get(key, (int, float), "a number", default)
        if value is not None and value < minimum:
            raise RubricError(f"{self.where}.{key}: expected a number >= {minimum}, got {value!r}")
        return value

    def bool(self, key: str, default: Any = None) -> bool:
        return self._get(key, (bool,), "true or false", default)

    def strs(self, key: str, default: Any = ()) -> tuple[str, ...]:
        value = self._get(key, (list,), "a list of strings", default)
        if not all(isinstance(v, str) for v in value):
            raise RubricError(f"{self.where}.{key}: expected a list of strings, got {value!r}")
        return tuple(value)

    def table(self, key: str, default: dict | None = None) -> "Table":
        self.used.add(key)
        if key not in self.data:
            if default is None:
                raise RubricError(f"{self.where}.{key}: missing; expected a table")
            return Table(default, f"{self.where}.{key}")
        return Table(self.data[key], f"{self.where}.{key}" if self.where else key)

    def tables(self, key: str) -> list["Table"]:
        value = self._get(key, (list,), "an array of tables ([[...]])", [])
        return [Table(v, f"{self.where}.{key}[{i}]" if self.where else f"{key}[{i}]")
                for i, v in enumerate(value)]

    def one_of(self, key: str, choices: tuple[str, ...], default: Any = None) -> str:
        value = self.str(key, default)
        if value not in choices:
            raise RubricError(f"{self.where}.{key}: expected one of {', '.join(choices)}; got {value!r}")
        return value

    def no_unknown_keys(self, also: tuple[str, ...] = ()) -> None:
        unknown = set(self.data) - self.used - set(also)
        if unknown:
            raise RubricError(f"{self.where}: unknown key(s) {', '.join(sorted(unknown))}")


def top_table(data: dict, key: str) -> Table:
    if key not in data:
        raise RubricError(f"[{key}]: missing table")
    return Table(data[key], key)
