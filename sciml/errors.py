"""Exception types that the CLI turns into one-line messages and exit codes.

``UsageError`` (exit 2) means the user asked for something invalid and can fix the command line or the
config; ``SciMLError`` (exit 1) is a failure while running valid input (divergence, I/O, ...).

Exit codes of every ``sciml`` command: :data:`EXIT_OK` (0) finished, :data:`EXIT_FAILURE` (1) runtime failure,
:data:`EXIT_USAGE` (2) bad input, :data:`EXIT_RESUME` (3) stopped by a signal after writing a checkpoint: run the
same command with ``--resume`` (the SLURM template requeues on it), 130 interrupted from the keyboard.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_RESUME = 3


class SciMLError(RuntimeError):
    """A runtime failure with a message meant for the user (exit code 1)."""


class UsageError(SciMLError, ValueError):
    """Invalid user input: unknown names, bad parameters, malformed config or data (exit code 2)."""


def _yaml_location(exc: BaseException, subject: object) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    where = f"{subject}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(subject)
    return f"{where}: not valid YAML: {problem}"


# Library exceptions that mean "this input is wrong", by qualified class name (no imports of the libraries here):
# name -> message; ``{s}`` is the input (file or value) and ``{e}`` the exception's first line.
_BAD_INPUT = {
    "zipfile.BadZipFile": "{s}: not a valid zip archive ({e})",
    "zarr.errors.GroupNotFoundError": "{s}: no zarr group there ({e}); check the path, or drop --layout to detect it",
    "zarr.errors.NodeNotFoundError": "{s}: no zarr group or array there ({e}); check the path, or drop --layout",
    "zarr.errors.PathNotFoundError": "{s}: no zarr store there ({e}); check the path, or drop --layout",
    "pandas._libs.tslibs.parsing.DateParseError": "{s}not a date/time: {e} (write e.g. 2001-01-01 or 2001-01-01T06)",
    "pandas._libs.tslibs.np_datetime.OutOfBoundsDatetime": "{s}date/time out of range: {e}",
    "json.decoder.JSONDecodeError": "{s}: invalid JSON: {e}",
    "builtins.FileNotFoundError": "{s}no such file or folder: {f}",
    "builtins.IsADirectoryError": "{s}a folder where a file was expected: {f}",
    "builtins.NotADirectoryError": "{s}a file where a folder was expected: {f}",
    "builtins.PermissionError": "{s}permission denied: {f}",
}


def explain(exc: BaseException, subject: object = None) -> UsageError | None:
    """The one place that turns a library's exception on bad input into a one-line :class:`UsageError`.

    ``subject`` (a file or value the user gave) prefixes the message when known. Returns ``None`` for
    exceptions that are not about the input (bugs and runtime failures keep their exit code 1).
    """
    if isinstance(exc, UsageError):
        return exc
    for cls in type(exc).__mro__:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name.startswith("yaml.") and name.endswith("YAMLError"):
            return UsageError(_yaml_location(exc, subject if subject is not None else "config"))
        text = _BAD_INPUT.get(name)
        if text is not None:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            s = "" if subject is None else str(subject)
            if "{s}:" not in text and s:
                s += ": "
            return UsageError(text.format(s=s, e=first, f=getattr(exc, "filename", None) or first))
    return None


class reading:  # noqa: N801 - used as a context manager, reads like a phrase
    """``with reading(path): ...`` turns bad-input exceptions of the block into a one-line error naming ``path``."""

    def __init__(self, subject: object) -> None:
        self.subject = subject

    def __enter__(self) -> reading:
        return self

    def __exit__(self, tp: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and not isinstance(exc, SciMLError):
            mapped = explain(exc, self.subject)
            if mapped is not None:
                raise mapped from exc
