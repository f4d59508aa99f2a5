"""Which source kinds exist, and the YAML keys each takes: derived from each kind's own constructor.

A kind is one class (``SqlSource``, ``FilesSource``, ...) registered here
under the name a declaration's ``kind:`` uses. Its YAML keys are the keyword
parameters of its ``__init__``, with their annotations as the types pydantic
checks (strictly: ``fetch_size: "100"`` is refused, not coerced) and their
defaults as the defaults, so adding a parameter to a source adds the key and
nothing else lists them. Parameters a declaration cannot set (the
declaration's folder, ``base_dir``) are passed by the loader, not read from
YAML.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator, create_model
from pydantic_core import PydanticCustomError

from tidemark.errors import InvalidInput
from tidemark.model.dataset import Source

__all__ = ["KeyRefused", "SourceKind", "build_source", "from_spec", "keys", "kinds", "register", "validation_error_text"]

# Constructor parameters filled in by the loader, never by a declaration.
LOADER_PARAMETERS = frozenset({"self", "base_dir"})


class KeyRefused(InvalidInput):
    """A kind's constructor refusing the value of one of its keys: a declaration reports it at that key."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


@dataclass(frozen=True)
class SourceKind:
    name: str
    build: Callable[..., Source]
    spec: type[BaseModel]
    takes_base_dir: bool

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(f.alias or k for k, f in self.spec.model_fields.items())


_kinds: dict[str, SourceKind] = {}

_NOUNS: dict[object, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                             type(None): "null", Callable: "a Python callable", Path: "a path"}


def _as_one_error(hint: Any) -> Any:
    """A union parameter (``str | Callable``) refused as one error at its own key.

    pydantic reports a union's refusal once per member, located under
    member tags (``count.str``, ``count.callable``) that are not keys a
    declaration has; one error naming what is accepted points at the key.
    """
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint
    members = [_NOUNS.get(typing.get_origin(m) or m, getattr(m, "__name__", str(m))) for m in typing.get_args(hint)]
    expected = ", ".join(members[:-1]) + f" or {members[-1]}"

    def one_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("union_type", f"must be {expected}, got {value!r}") from None

    return Annotated[hint, WrapValidator(one_error)]


def _spec_of(name: str, build: Callable[..., Any]) -> tuple[type[BaseModel], bool]:
    target = build.__init__ if inspect.isclass(build) else build
    hints = typing.get_type_hints(target)
    fields: dict[str, Any] = {}
    takes_base_dir = False
    for param in inspect.signature(target).parameters.values():
        if param.name == "base_dir":
            takes_base_dir = True
        if param.name in LOADER_PARAMETERS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        # A key named like a BaseModel attribute (``schema``) is held under another name, read by its own.
        field_name = f"{param.name}_" if hasattr(BaseModel, param.name) else param.name
        fields[field_name] = (_as_one_error(hints.get(param.name, Any)), Field(default, alias=param.name))
    model = create_model(
        f"{name}_source", __config__=ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True), **fields
    )
    return model, takes_base_dir


def register(name: str, build: Callable[..., Source]) -> SourceKind:
    """Make ``kind: NAME`` mean ``build(**keys)``; its keys are read off ``build``'s signature."""
    spec, takes_base_dir = _spec_of(name, build)
    kind = SourceKind(name, build, spec, takes_base_dir)
    _kinds[name] = kind
    return kind


def kinds() -> dict[str, SourceKind]:
    return dict(_kinds)


def keys(name: str) -> frozenset[str]:
    return _kinds[name].keys


def validation_error_text(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """(where, message) of the first error pydantic found, the message without pydantic's URL."""
    first = exc.errors(include_url=False)[0]
    message = str(first.get("msg", "is not valid"))
    if first.get("type") == "extra_forbidden":
        message = "unknown key"
    elif first.get("type") == "missing":
        message = "is required"
    return tuple(first.get("loc", ())), message


def build_source(name: str, args: Mapping[str, Any], base_dir: Path | None = None) -> Source:
    """A source of the registered kind ``name`` from its keys (``kind`` left out).

    Keys that do not fit the signature raise pydantic's ValidationError,
    located at the key, so a declaration validated by pydantic reports the
    full key path (``tables[0].source.fetch_size``); a constructor's own
    refusal (a query without its window) stays InvalidInput.
    """
    kind = _kinds[name]
    checked = kind.spec.model_validate(args)
    fields = kind.spec.model_fields
    values = {fields[k].alias or k: getattr(checked, k) for k in checked.model_fields_set}
    if kind.takes_base_dir:
        values["base_dir"] = base_dir
    return kind.build(**values)


def from_spec(spec: Mapping[str, Any], base_dir: Path | None = None) -> Source:
    """A source from a declaration's ``source`` mapping (``kind`` and that kind's keys)."""
    name = spec.get("kind")
    kind = _kinds.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidInput(f"source kind must be one of {', '.join(sorted(_kinds))}, got {name!r}")
    args = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return build_source(kind.name, args, base_dir)
    except ValidationError as exc:
        loc, message = validation_error_text(exc)
        key = ".".join(str(part) for part in loc)
        if message == "unknown key":
            raise InvalidInput(f"unknown key {key!r} for a {name} source (it takes {', '.join(sorted(kind.keys))})") from None
        if message == "is required":
            raise InvalidInput(f"a {name} source needs the key {key!r}") from None
        raise InvalidInput(f"{name} source key {key}: {message}") from None
