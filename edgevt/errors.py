"""One exception type for bad user input: the CLI prints its message on one line, no traceback."""


class EdgevtError(Exception):
    """A problem with the user's input or environment that a clear message can explain."""
