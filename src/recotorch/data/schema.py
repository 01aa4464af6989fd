"""`FileSchema`: how a model's training file was read, stored with the model (`schema.json`).

Later commands on the model (predict, evaluate, recommend --users, ...) read their files with
the same columns and layout by default, so a file in the training file's layout needs no
column options again. Old model directories have no schema: then the defaults apply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from recotorch.errors import CorruptModelError

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1
ROLES = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class FileSchema:
    """Columns (names, or 0-based positions), format, separator and header flag of the training file.

    `format` is "csv", "tsv", "parquet", "jsonl" or "text" (delimited by `sep`); `options`
    holds the data options fit was given (weights, implicit, threshold, ...), as given.
    """

    user: str | int
    item: str | int
    rating: str | int | None = None
    timestamp: str | int | None = None
    format: str = "csv"
    sep: str | None = None
    has_header: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> dict[str, str | int | None]:
        """Role -> column, for every role (None: not read)."""
        return {role: getattr(self, role) for role in ROLES}

    def to_bytes(self) -> bytes:
        return json.dumps({"schema": SCHEMA_VERSION, **asdict(self)}, indent=1).encode()

    @classmethod
    def from_bytes(cls, content: bytes, where: Any = SCHEMA_FILE) -> FileSchema:
        """Parse `schema.json`; `CorruptModelError` naming `where` when it is not one."""
        try:
            payload = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptModelError(where, f"is not valid JSON ({exc})") from None
        if not isinstance(payload, dict) or payload.get("schema") != SCHEMA_VERSION:
            raise CorruptModelError(where, f"is not a schema of version {SCHEMA_VERSION}")
        column = (str, int, type(None))
        checks = {"user": (str, int), "item": (str, int), "rating": column, "timestamp": column,
                  "format": (str,), "sep": (str, type(None)), "has_header": (bool,), "options": (dict,)}
        for key, kinds in checks.items():
            value = payload.get(key)
            if key not in payload or not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise CorruptModelError(where, f"key {key!r} is missing or of the wrong type")
        return cls(**{key: payload[key] for key in checks})
