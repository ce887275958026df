"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""
from __future__ import annotations


class BenchError(Exception):
    """An error the user can fix; the message says what to do."""

    exit_code = 2


class DataError(BenchError):
    """Bad input data; the message names the file, line or field."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path) + (f":{line}" if line is not None else ""))
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)
        self.path, self.line, self.field = path, line, field


class DataWarning(UserWarning):
    """Data that loads but can mislead (one class in train, labels equal up to case);
    the CLI prints it as one `warning:` line and goes on."""
