"""The files a backtest reads: request events, labels and decisions, each bad one reported in one line.

Plain or gzip (by the ``.gz`` suffix). A file that is missing, is not gzip though named
``.gz``, is truncated or holds a line that breaks the contract raises ``InputError`` with
the path and, where there is one, the line number: the scorer and the baseline print
that line and stop rather than score half a file.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from stream.files import READ_ERRORS, file_problem


class InputError(ValueError):
    """A file (or an in-memory record) a backtest cannot read: the message is one line naming it."""


class Request(msgspec.Struct, frozen=True):
    """The fields of a request event (the contract's) that scoring and the static limits read."""

    account_id: str
    ts: float
    ip: str
    asn: int | None | msgspec.UnsetType = msgspec.UNSET
    payment_fp: str | None = None


_decode_request = msgspec.json.Decoder(Request).decode


def _open(path: str) -> IO[bytes]:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # type: ignore[return-value]  # noqa: SIM115


def lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a plain or gzip file with their line numbers (from 1).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.jsonl")
    >>> _ = open(p, "w").write('{"a": 1}\\n\\n{"a": 2}\\n')
    >>> list(lines(p))
    [(1, b'{"a": 1}\\n'), (3, b'{"a": 2}\\n')]
    >>> list(lines(p + ".missing"))
    Traceback (most recent call last):
    ...
    backtest.files.InputError: ....missing: No such file or directory
    """
    p = str(path)
    try:
        with _open(p) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line
    except READ_ERRORS as exc:
        raise InputError(file_problem(p, exc)) from None


def read_bytes(path: str | Path) -> bytes:
    """The whole content of a plain or gzip file."""
    p = str(path)
    try:
        with _open(p) as f:
            return f.read()
    except READ_ERRORS as exc:
        raise InputError(file_problem(p, exc)) from None


def requests(events: str | Path | Iterable[Mapping[str, Any]]) -> Iterator[Request]:
    """The requests of an events file (JSON Lines) or of in-memory event dicts, in their order."""
    if isinstance(events, str | Path):
        for n, line in lines(events):
            try:
                yield _decode_request(line)
            except msgspec.MsgspecError as exc:
                raise InputError(f"{events}:{n}: not a request event: {exc}") from None
        return
    for n, ev in enumerate(events, 1):
        try:
            yield msgspec.convert(ev, Request)
        except msgspec.MsgspecError as exc:
            raise InputError(f"event {n}: not a request event: {exc}") from None


def read_labels(labels: str | Path | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ground truth per account (``accounts`` of a labels file, or of the same dict in memory)."""
    doc: Any = labels
    where = "labels"
    if isinstance(labels, str | Path):
        where = str(labels)
        try:
            doc = orjson.loads(read_bytes(labels))
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON: {exc}") from None
    accounts = doc.get("accounts") if isinstance(doc, Mapping) else None
    if not isinstance(accounts, Mapping) or not all(isinstance(v, Mapping) and "label" in v
                                                    for v in accounts.values()):
        raise InputError(f"{where}: not a labels file (wants {{\"accounts\": {{id: {{\"label\": ...}}}}}})")
    return dict(accounts)


def decision_records(decisions: str | Path | Iterable[Any]) -> Iterator[Any]:
    """Each decision as it comes: a line of a JSON Lines file (bytes), or an in-memory dict or Decision."""
    if isinstance(decisions, str | Path):
        for _, line in lines(decisions):
            yield line
    else:
        yield from decisions
