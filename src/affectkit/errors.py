"""The exception type the command line turns into a clear message instead of a traceback."""


class AffectkitError(Exception):
    """A problem the user can fix (bad data, missing file, bad option); its message says what and where."""


class KindedError(AffectkitError):
    """An AffectkitError with a ``kind`` for code to act on (the server's HTTP status, say)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def one_line(error: BaseException | str) -> str:
    """An error's message on one line, for a table cell or a sentence: libraries' own messages may span several
    (libheif ends its with a newline)."""
    return " ".join(str(error).split())
