"""The errors that are the user's to fix (bad data, path, input file, teacher name), and how they are shown.

Each message already names the file, key or value at fault, so a run that stops on one prints
that line alone (:func:`install_one_line_errors`). This module imports nothing from
``rd_components``: every module can raise these without an import circle.
"""

from __future__ import annotations

import os
import sys

__all__ = ["NoImageError", "BadInputError", "DataConfigError", "UnknownTeacherError", "describe_error",
           "install_one_line_errors"]


class NoImageError(ValueError):
    """The file cannot give an image; the message says why in plain words."""


class BadInputError(ValueError):
    """Raised when training data fails the pre-flight check and the policy is ``error``."""


class DataConfigError(ValueError):
    """The user's data cannot be used; the message names the cause and the file or key."""


class UnknownTeacherError(ValueError):
    """The teacher name is neither registered nor of a known ``prefix:`` family."""


def describe_error(error: BaseException) -> str:
    """One line for a loading failure: the innermost cause, with MONAI's wrapping removed."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join(str(error).split()) or type(error).__name__
    # our own reasons are already plain words (a mixed series folder names every series: longer);
    # MONAI's internal ones are translated
    if isinstance(error, NoImageError):
        return text[:1000]
    if text.startswith("wrong dimensionality"):
        return text[:300]
    if "cannot find a suitable reader" in text:
        return "not a readable DICOM or NIfTI file"
    if "axcodes must match data_array spatially" in text:
        return "wrong dimensionality: the image has another number of axes than the model takes"
    if "does not have pixel_array" in text:
        return "no image in this file (no pixel data)"
    if "in start_ornt" in text:
        return "image orientation could not be read"
    return f"{type(error).__name__}: {text[:300]}"


def _user_error(error: BaseException | None) -> BaseException | None:
    """The first error of ``error``'s chain that is the user's to fix (bad data, path, teacher)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (DataConfigError, UnknownTeacherError, BadInputError)):
            return error
        error = error.__cause__ or error.__context__
    return None


def install_one_line_errors() -> None:
    """Print a user mistake that stops a run as one line instead of a config traceback.

    MONAI wraps every failure in a config expression into "Failed to evaluate
    ConfigExpression" tracebacks some 60 lines long; when the root cause is one of ours that
    already names the file, key or value (:class:`DataConfigError`, :class:`UnknownTeacherError`,
    :class:`BadInputError`), only its message is printed and the process exits with status 1.
    Set ``RD_TRACEBACK=1`` to see the full traceback. Other errors, and a process that installed
    its own hook, are left alone.
    """
    if sys.excepthook is not sys.__excepthook__:
        return
    previous = sys.excepthook

    def hook(kind, error, traceback):
        user = None if os.environ.get("RD_TRACEBACK") else _user_error(error)
        if user is None:
            previous(kind, error, traceback)
            return
        print(f"Error: {user}", file=sys.stderr)
        sys.stderr.flush()

    sys.excepthook = hook
