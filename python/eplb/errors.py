"""eplb's errors as Python exceptions.

Every function of libeplb returns 0 or a negative ``EPLB_E*`` code and fills
a one-line message that names the file, rank, layer or field and says what
to do (``include/eplb/error.h``).  Here each code is an exception class,
all subclasses of :class:`Error`, which carries ``.code`` (the negative
number) and ``.name`` (``"EPLB_EARG"``...); ``str(e)`` is the one-line
message.  Each class also derives from the built-in exception a Python
caller would expect (``ValueError`` for bad arguments and data,
``OSError`` for files, ``MemoryError``), so ``except ValueError`` works as
well.  The checks this package makes itself, before libeplb sees the data,
raise the same classes.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Error", "ArgError", "NoMemError", "IoError", "ParseError", "CountError",
    "ShapeError", "MapError", "MPIError", "HDF5Error", "DivergedError",
    "RemoteError", "ChecksumError", "StateError", "InternalError",
    "UnsupportedError", "LibraryError", "error_class",
]


class Error(Exception):
    """An eplb failure: ``.code`` is the ``EPLB_E*`` code (negative),
    ``.name`` its symbolic name, ``str(e)`` the one-line message."""

    code: int = 0
    name: str = "EPLB_OK"

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


# The classes, one per code of EPLB_ERRNO_MAP (include/eplb/error.h).  The
# codes are checked against the loaded library (eplb_err_name) when it is
# loaded, so a code added in C without a class here fails loudly.
class ArgError(Error, ValueError):
    """EPLB_EARG: an argument or option is out of range."""
    code, name = -1, "EPLB_EARG"


class NoMemError(Error, MemoryError):
    """EPLB_ENOMEM: out of memory."""
    code, name = -2, "EPLB_ENOMEM"


class IoError(Error, OSError):
    """EPLB_EIO: a file could not be opened, read or written."""
    code, name = -3, "EPLB_EIO"


class ParseError(Error, ValueError):
    """EPLB_EPARSE: malformed input."""
    code, name = -4, "EPLB_EPARSE"


class CountError(Error, ValueError):
    """EPLB_ECOUNT: a count is negative, not finite or above 2^53."""
    code, name = -5, "EPLB_ECOUNT"


class ShapeError(Error, ValueError):
    """EPLB_ESHAPE: shapes disagree (or an array has the wrong dimensions
    or element type)."""
    code, name = -6, "EPLB_ESHAPE"


class MapError(Error, ValueError):
    """EPLB_EMAP: an invalid expert map."""
    code, name = -7, "EPLB_EMAP"


class MPIError(Error, RuntimeError):
    """EPLB_EMPI: an MPI call failed."""
    code, name = -8, "EPLB_EMPI"


class HDF5Error(Error, RuntimeError):
    """EPLB_EHDF5: an HDF5 call failed."""
    code, name = -9, "EPLB_EHDF5"


class DivergedError(Error, RuntimeError):
    """EPLB_EDIVERGED: the ranks' copies of the plan differ."""
    code, name = -10, "EPLB_EDIVERGED"


class RemoteError(Error, RuntimeError):
    """EPLB_EREMOTE: another rank failed."""
    code, name = -11, "EPLB_EREMOTE"


class ChecksumError(Error, RuntimeError):
    """EPLB_ECHECKSUM: a checksum did not match."""
    code, name = -12, "EPLB_ECHECKSUM"


class StateError(Error, RuntimeError):
    """EPLB_ESTATE: inconsistent on-disk state."""
    code, name = -13, "EPLB_ESTATE"


class InternalError(Error, RuntimeError):
    """EPLB_EINTERNAL: a bug in eplb (please report it)."""
    code, name = -14, "EPLB_EINTERNAL"


class UnsupportedError(ArgError, NotImplementedError):
    """A feature the loaded libeplb does not have yet (code EPLB_EARG)."""


class LibraryError(Error, ImportError):
    """libeplb.so could not be found or loaded, or is of another version
    (code EPLB_EIO)."""
    code, name = -3, "EPLB_EIO"


_BY_CODE: Dict[int, Type[Error]] = {
    c.code: c for c in (ArgError, NoMemError, IoError, ParseError, CountError,
                        ShapeError, MapError, MPIError, HDF5Error,
                        DivergedError, RemoteError, ChecksumError, StateError,
                        InternalError)
}


def error_class(code: int) -> Type[Error]:
    """The exception class of an ``EPLB_E*`` code (:class:`Error` for a code
    this package does not know)."""
    return _BY_CODE.get(code, Error)


def make_error(code: int, message: str) -> Error:
    """An exception of the class of ``code`` with ``message``."""
    cls = error_class(code)
    e = cls(message, code)
    if cls is Error:
        e.name = "EPLB_E?(%d)" % code
    return e
