"""Exception types that the CLI turns into one-line messages and exit codes.

``UsageError`` (exit 2) means the user asked for something invalid and can fix the command line or the
config; ``SciMLError`` (exit 1) is a failure while running valid input (divergence, I/O, ...).

Exit codes of every ``sciml`` command: :data:`EXIT_OK` (0) finished, :data:`EXIT_FAILURE` (1) runtime failure,
:data:`EXIT_USAGE` (2) bad input, :data:`EXIT_RESUME` (3) stopped by a signal after writing a checkpoint: run the
same command with ``--resume`` (the SLURM template requeues on it), 130 interrupted from the keyboard.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_RESUME = 3


class SciMLError(RuntimeError):
    """A runtime failure with a message meant for the user (exit code 1)."""


class UsageError(SciMLError, ValueError):
    """Invalid user input: unknown names, bad parameters, malformed config or data (exit code 2)."""
