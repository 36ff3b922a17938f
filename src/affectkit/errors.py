"""The one exception type the command line turns into a clear message instead of a traceback."""


class AffectkitError(Exception):
    """A problem the user can fix (bad data, missing file, bad option); its message says what and where."""
