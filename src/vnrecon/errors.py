"""The one exception type for bad user input.

Anything the user can get wrong (a missing or malformed file, a mask that does
not fit the data, NaN in k-space, ...) raises ``InputError`` with a one-line
message that names the file and the problem. The CLI prints exactly that line
and exits with status 2, without a traceback.
"""


class InputError(ValueError):
    """Bad user input; ``str(error)`` is the complete one-line message."""
