"""Exception types that the CLI turns into one-line messages and exit codes.

``UsageError`` (exit 2) means the user asked for something invalid and can fix the command line or the
config; ``SciMLError`` (exit 1) is a failure while running valid input (divergence, I/O, ...).
"""


class SciMLError(RuntimeError):
    """A runtime failure with a message meant for the user (exit code 1)."""


class UsageError(SciMLError, ValueError):
    """Invalid user input: unknown names, bad parameters, malformed config or data (exit code 2)."""
