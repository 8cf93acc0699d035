"""The project's own error types: every bad input ends in one of these, with where it came from."""


class TinyThinkerError(Exception):
    """Base class: anything the user can fix (bad data, bad config, missing key...)."""


class DataError(TinyThinkerError):
    """A malformed input row. Names the file, the line (1-based) and the field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        self.message = message  # without the location: what was wrong (used to count skipped rows by reason)
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [where] if where else []
        if field:
            parts.append(f"field '{field}'")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class ConfigError(TinyThinkerError):
    """An unknown key, a wrong type or a value outside the allowed ones."""
