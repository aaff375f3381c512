"""Files the commands read and write: one line for a file that cannot be read, and outputs written
whole or not at all (a temporary file beside the output, moved into place once complete)."""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(Exception):
    """An output that cannot be written where asked; the message says which and why."""


def file_problem(path: str, exc: BaseException) -> str:
    """One line for a file that could not be read or written whole.

    >>> file_problem("e.jsonl.gz", EOFError("Compressed file ended before the end-of-stream marker was reached"))
    'e.jsonl.gz: truncated (the gzip stream ends early)'
    """
    if isinstance(exc, gzip.BadGzipFile):
        return f"{path}: not gzip data, though named .gz"
    if isinstance(exc, EOFError):
        return f"{path}: truncated (the gzip stream ends early)"
    if isinstance(exc, zlib.error):
        return f"{path}: corrupt gzip data ({exc})"
    if isinstance(exc, OSError):
        return f"{getattr(exc, 'filename', None) or path}: {exc.strerror or exc}"
    return f"{path}: {exc}"


READ_ERRORS = (OSError, EOFError, zlib.error)


@contextmanager
def written_whole(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` to write to, moved onto ``path`` only if the block succeeds.

    Keeps a ``.gz`` ending, which is what makes the writer compress."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{path}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                   suffix=".tmp.gz" if path.endswith(".gz") else ".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the output private
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
