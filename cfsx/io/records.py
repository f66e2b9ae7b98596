"""Typed records as JSON and HDF5: one way to turn any cfsx record (a dataclass) into files and back.

``to_plain`` makes JSON values of a record (arrays as {"array": lists, "dtype": name}); ``from_plain``
rebuilds the record from its type hints, nested records, tuples and arrays included. ``write_h5`` and
``read_h5`` do the same with an HDF5 group: a record or dict becomes a group, an array a dataset at its
own precision, a scalar or string an attribute, a list of plain values a JSON attribute.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from typing import Any

import numpy as np

NONE_ATTRIBUTE = "__none__"  # the attribute naming the fields of a group that are None
JSON_ATTRIBUTE = "__json__"  # the attribute naming the attributes of a group that hold JSON text (lists)


def to_plain(value: Any) -> Any:
    """A record as JSON values: dataclasses as dicts (or as their own ``to_plain`` says), arrays as
    {"array": lists, "dtype": name}."""
    if is_dataclass(value) and hasattr(value, "to_plain"):
        return value.to_plain()
    if is_dataclass(value):
        return {item.name: to_plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    return value


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _record_type(hint: Any) -> type | None:
    """The dataclass a field holds, also inside ``X | None``."""
    if is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next((arg for arg in typing.get_args(hint) if is_dataclass(arg)), None)
    return None


def _value_type(hint: Any) -> Any:
    """The type of a dict's values (``dict[str, X]``, also inside ``... | None``), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is dict:
            return typing.get_args(candidate)[1]
    return None


def _item_type(hint: Any) -> Any:
    """The type of a list's items (``list[X]``, also inside ``... | None``), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is list:
            return typing.get_args(candidate)[0]
    return None


def _is_tuple(hint: Any) -> bool:
    return any(typing.get_origin(candidate) is tuple for candidate in (hint, *typing.get_args(hint)))


def _rebuild(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    record = _record_type(hint)
    if record is not None:
        return from_plain(record, value)
    inner = _value_type(hint)
    if inner is not None and _record_type(inner) is not None:
        return {key: from_plain(_record_type(inner), item) for key, item in value.items()}
    item_type = _item_type(hint)
    if item_type is not None and _record_type(item_type) is not None:
        return [from_plain(_record_type(item_type), item) for item in value]
    value = _arrays(value)
    return tuple(value) if _is_tuple(hint) and isinstance(value, list) else value


def from_plain(kind: type, data: dict[str, Any]) -> Any:
    """The record of dataclass ``kind`` that ``to_plain`` made ``data`` of (by its own ``from_plain`` if it has one)."""
    if hasattr(kind, "from_plain"):
        return kind.from_plain(data)
    hints = _hints(kind)
    return kind(**{item.name: _rebuild(hints[item.name], data[item.name]) for item in fields(kind) if item.init})


def _arrays(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"array", "dtype"}:
        return np.asarray(value["array"], dtype=np.dtype(value["dtype"]))
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_arrays(item) for item in value]
    return value


def to_json(record: Any) -> str:
    """The whole record as JSON text; ``from_json`` gives it back."""
    return json.dumps(to_plain(record))


def from_json(kind: type, text: str) -> Any:
    """The record of dataclass ``kind`` that ``to_json`` wrote."""
    return from_plain(kind, json.loads(text))


def write_h5(group, record: Any) -> None:
    """Write a record (or dict) into an open h5py group: sub-records and dicts as groups (in order), arrays as
    datasets, other values as attributes (lists and tuples as JSON text, listed in ``__json__``); None fields
    listed in ``__none__``."""
    items = {item.name: getattr(record, item.name) for item in fields(record)} if is_dataclass(record) else dict(record)
    nothing, as_json = [], []
    for name, value in items.items():
        name = str(name)
        if value is None:
            nothing.append(name)
        elif is_dataclass(value) or isinstance(value, dict):
            write_h5(group.create_group(name, track_order=True), value)
        elif isinstance(value, np.ndarray):
            group.create_dataset(name, data=value)
        elif isinstance(value, list | tuple):
            group.attrs[name] = json.dumps(to_plain(value))
            as_json.append(name)
        else:
            group.attrs[name] = value
    group.attrs[NONE_ATTRIBUTE] = json.dumps(nothing)
    group.attrs[JSON_ATTRIBUTE] = json.dumps(as_json)


def _read_group(group, hints: dict[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(json.loads(group.attrs.get(NONE_ATTRIBUTE, "[]")))
    as_json = set(json.loads(group.attrs.get(JSON_ATTRIBUTE, "[]")))
    for name, value in group.attrs.items():
        if name in (NONE_ATTRIBUTE, JSON_ATTRIBUTE):
            continue
        hint = hints.get(name) if hints else None
        if isinstance(value, bytes):
            value = value.decode()
        if name in as_json:
            value = _rebuild(hint, json.loads(value))
        elif isinstance(value, np.generic):
            value = value.item()
        values[name] = value
    for name, item in group.items():
        hint = hints.get(name) if hints else None
        if hasattr(item, "keys"):  # a group
            record = _record_type(hint) if hint is not None else None
            inner = _value_type(hint) if hint is not None else None
            if record is not None:
                values[name] = read_h5(item, record)
            elif inner is not None and _record_type(inner) is not None:
                values[name] = {key: read_h5(item[key], _record_type(inner)) for key in item}
            else:
                values[name] = _read_group(item, None)
        else:
            values[name] = item[()]
    return values


def read_h5(group, kind: type) -> Any:
    """The record of dataclass ``kind`` that ``write_h5`` wrote into ``group``."""
    values = _read_group(group, _hints(kind))
    return kind(**{item.name: values[item.name] for item in fields(kind) if item.init})


def rebuild(hint: Any, plain: Any) -> Any:
    """The value of type ``hint`` (a record, a list or dict of records, an array, ...) that ``to_plain`` made."""
    return _rebuild(hint, plain)


def write_rows(group, name: str, values: list[Any]) -> None:
    """One field of several records as one entry of ``group``: arrays (S, ...) stacked when every record has one of
    the same shape, anything else one JSON text per record (``read_rows`` gives them back)."""
    import h5py

    arrays = [value for value in values if isinstance(value, np.ndarray)]
    if len(arrays) == len(values) and len({array.shape for array in arrays}) == 1:
        group.create_dataset(name, data=np.stack(arrays))
    else:
        group.create_dataset(name, data=[json.dumps(to_plain(value)) for value in values], dtype=h5py.string_dtype())


def read_rows(group, name: str, hint: Any) -> list[Any]:
    """The values ``write_rows`` wrote, one per record, rebuilt as type ``hint``."""
    dataset = group[name]
    if dataset.dtype.kind in "biufc":
        return list(dataset[()])
    return [rebuild(hint, json.loads(text)) for text in dataset.asstr()[()]]


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of what ``to_plain`` (then NaN and infinity as null) makes of a value of type ``hint``."""
    if hint is type(None):
        return {"type": "null"}
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return {"anyOf": [json_schema(arg) for arg in typing.get_args(hint)]}
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        arguments = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        return {"type": "array", "items": json_schema(arguments[0]) if arguments else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(typing.get_args(hint)[1])}
    if is_dataclass(hint) and hasattr(hint, "to_plain"):
        return {"type": "object"}  # a record that lays itself out
    if is_dataclass(hint):
        hints = _hints(hint)
        names = [item.name for item in fields(hint)]
        required = [item.name for item in fields(hint) if item.default is MISSING and item.default_factory is MISSING]
        properties = {name: json_schema(hints[name]) for name in names}
        return {"type": "object", "required": required, "properties": properties}
    simple = {bool: "boolean", int: "integer", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint is float:
        return {"type": ["number", "null"]}  # NaN and infinity are null in JSON
    if hint is np.ndarray:
        return {"type": "object", "required": ["array", "dtype"],
                "properties": {"array": {"type": "array"}, "dtype": {"type": "string"}}}  # fmt: skip
    return {}
