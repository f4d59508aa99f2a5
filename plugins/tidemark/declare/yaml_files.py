"""Datasets declared in YAML files: one file per dataset, read defensively, validated by the declaration's models.

Every error names the file and the key path (``tables[0].columns[2].type``),
so a user can fix a declaration without reading Tidemark's code; a file that
fails is refused on its own and never stops the other datasets from being
offered. What each key may hold is ``tidemark.declare.declaration``'s.

The file is untrusted input to a process every DAG depends on, so reading it
is bounded before any content is looked at: its size from ``stat`` (a 60 MB
file is refused unread), its kind (a FIFO named ``x.yaml`` would block the
DAG processor's open forever; a device would never end), and then from the
descriptor actually opened, so a file swapped in between is caught too. The
YAML itself is parsed by ``strict_yaml`` (no aliases, no duplicate keys,
bounded nesting), and every value an error repeats is cut to a short prefix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tidemark import config
from tidemark.declare import strict_yaml
from tidemark.declare.declaration import DatasetDecl, got
from tidemark.declare.strict_yaml import cut
from tidemark.errors import InvalidInput
from tidemark.model.dataset import Dataset

__all__ = ["DeclarationError", "key_path", "load_dataset", "load_file", "read_text"]

# The longest detail (after the file and key) an error carries: whatever a check or a parser says stays readable.
DETAIL = 300
_CHUNK = 64 * 1024


class DeclarationError(InvalidInput):
    """A dataset declaration was refused; the message names where and which key."""


# pydantic's wording for its own checks, in a declaration's terms; the value the file has is appended.
_PLAIN = {"string_type": "must be a string", "bool_type": "must be true or false", "int_type": "must be an integer",
          "float_type": "must be a number", "list_type": "must be a list", "dict_type": "must be a mapping",
          "model_type": "must be a mapping"}


def key_path(loc: tuple[str | int, ...]) -> str:
    """``tables[0].columns[2].type``, not ``('tables', 0, 'columns', ...)``; a key's own text is cut short."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{cut(str(part))}" if path else cut(str(part))
    return path or "(top level)"


def _without_long_values(message: str, value: object) -> str:
    """The message with any long rendering of ``value`` cut: checks elsewhere echo the value whole."""
    if isinstance(value, (str, bytes, int, float, list, dict)):
        for text, short in ((repr(value), strict_yaml.shown(value)), (str(value), cut(str(value)))):
            if len(text) > strict_yaml.ECHO and text in message:
                message = message.replace(text, short)
    return cut(message, DETAIL)


def describe(error: ErrorDetails) -> tuple[str, str]:
    """One pydantic error as a user reads it: the key path, then what is wrong with the value there."""
    kind = error["type"]
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":  # a backstop: the models refuse unknown keys first, naming the allowed ones
        message = "unknown key"
    elif kind in _PLAIN:
        message = f"{_PLAIN[kind]}, got {got(error['input'])}"
    else:
        message = _without_long_values(error["msg"], error["input"])
    return key_path(tuple(error["loc"])), message


def load_dataset(data: Any, where: str, base_dir: Path) -> Dataset:
    """The dataset ``data`` (a parsed YAML document) declares; relative file paths in it are below ``base_dir``."""
    try:
        return DatasetDecl.model_validate(data, context={"base_dir": base_dir, "origin": where}).dataset
    except ValidationError as exc:
        # One error, the first pydantic met (keys in the order the models list them): others often follow from it.
        key, message = describe(exc.errors(include_url=False)[0])
        raise DeclarationError(f"{where}: key {key}: {message}") from None


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check(st: os.stat_result, where: str, max_bytes: int, path: Path) -> None:
    if not stat.S_ISREG(st.st_mode):
        link = " (through a symlink)" if path.is_symlink() else ""
        raise DeclarationError(f"{where}: is {_kind(st.st_mode)}{link}, not a regular file: refused unread")
    if st.st_size > max_bytes:
        raise DeclarationError(f"{where}: is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit "
                               "(TIDEMARK_DATASET_FILE_MAX_BYTES): refused unread")


def read_text(path: Path, max_bytes: int) -> str:
    """The file's text: a regular file of at most ``max_bytes`` bytes of UTF-8, or DeclarationError saying why not."""
    where = f"dataset file {path}"
    try:
        _check(os.stat(path), where, max_bytes, path)
        # Non-blocking: should a FIFO be swapped in after the stat, opening it still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            _check(os.fstat(fd), where, max_bytes, path)  # what was opened, not what the path named a moment ago
            chunks: list[bytes] = []
            size = 0
            while size <= max_bytes:
                chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))  # os.read allocates what it is asked for
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeclarationError(f"{where}: cannot read: {exc.strerror or type(exc).__name__}") from None
    if size > max_bytes:
        raise DeclarationError(f"{where}: grew past the {max_bytes:,}-byte limit (TIDEMARK_DATASET_FILE_MAX_BYTES) "
                               "while being read: refused")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DeclarationError(f"{where}: is not UTF-8: byte 0x{data[exc.start]:02x} at line {line} "
                               f"(offset {exc.start}) is {exc.reason}") from None


def _yaml_error(exc: yaml.YAMLError) -> str:
    """The parser's complaint on one line, without its quote of the source (which may be a long value)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"{exc.problem}{context}" + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")
    return " ".join(str(exc).split())


def parse(text: str, where: str) -> Any:
    """The document ``text`` holds, or DeclarationError naming the key (or line) where it went wrong."""
    try:
        return strict_yaml.load(text)
    except strict_yaml.Refusal as exc:
        raise DeclarationError(f"{where}: key {key_path(exc.loc)}: {cut(exc.message, DETAIL)}") from None
    except yaml.YAMLError as exc:
        raise DeclarationError(f"{where}: not valid YAML: {cut(_yaml_error(exc), DETAIL)}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # a scalar's constructor (an int of 5,000 digits)
        raise DeclarationError(f"{where}: not valid YAML: {cut(str(exc), DETAIL)}") from None


def load_file(path: Path, max_bytes: int | None = None) -> Dataset:
    """The dataset the file declares; ``max_bytes`` defaults to ``TIDEMARK_DATASET_FILE_MAX_BYTES``."""
    where = f"dataset file {path}"
    limit = config.dataset_file_max_bytes() if max_bytes is None else max_bytes
    return load_dataset(parse(read_text(path, limit), where), where, path.parent)

