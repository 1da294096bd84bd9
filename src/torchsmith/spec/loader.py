"""Reading and writing spec files: safe YAML with line numbers, JSON, and the place of an error.

A spec read from a file remembers where each entry came from, so an error can
say ``net.yaml, line 14: layers[7] linear: ...``. The loader is built on
``yaml.SafeLoader``: it makes only dicts, lists and scalars, never objects
(``!!python/object`` tags are rejected by the safe loader itself).

JSON is parsed by :mod:`json` (strict), then re-read by the YAML loader only to
recover line numbers; JSON that PyYAML reads differently simply has none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from torchsmith.errors import SpecError

__all__ = ["LineDict", "LineList", "load_spec", "plain", "dump_spec", "Where", "SPEC_SUFFIXES"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


class LineDict(dict):  # type: ignore[type-arg]
    """A dict from a spec file that knows the line of itself and of each key (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]
    source: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}


class LineList(list):  # type: ignore[type-arg]
    """A list from a spec file that knows the line of itself and of each item (1-based)."""

    line: int | None = None
    item_lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []


# libyaml's parser when PyYAML has it (10x faster); the constructor is SafeConstructor either way, so the
# loader makes only dicts, lists and scalars and rejects every python/* tag.
_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[misc,valid-type]
    """SafeLoader that builds LineDict/LineList and refuses duplicate keys (safe_load keeps the last silently)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise SpecError(f"line {line}: a mapping key must be a plain value, not {type(key).__name__}") from None
        if key in out:
            raise SpecError(f"line {line}: key {key!r} appears twice in the same mapping "
                            f"(first on line {out.key_lines[key]}); keep one")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList()
    out.line = node.start_mark.line + 1
    for child in node.value:
        out.append(loader.construct_object(child, deep=True))
        out.item_lines.append(child.start_mark.line + 1)
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _yaml_with_lines(text: str) -> Any:
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a spec file (``.yaml``/``.yml``/``.json``) safely; the dicts it returns carry line numbers.

    Args:
        path: The spec file.

    Returns:
        The spec as plain dicts and lists, ready for :func:`build`.

    Raises:
        SpecError: A missing file, bad syntax (with its line) or a top level that is not a mapping.
    """
    if not isinstance(path, (str, Path)):
        raise SpecError(f"a spec file is a path such as 'net.yaml', not {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in SPEC_SUFFIXES:
        raise SpecError(f"{path}: a spec file ends in .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec file {str(path)!r}: {e}") from e
    if p.suffix.lower() == ".json":
        data = _load_json(text, str(path))
    else:
        try:
            data = _yaml_with_lines(text)
        except SpecError as e:
            raise SpecError(f"{path}, {e}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise SpecError(f"{path}{where}: not valid YAML: {problem}") from e
    if not isinstance(data, dict):
        kind = "empty" if data is None else "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise SpecError(f"{path}: a spec is a mapping with `input` and `layers`, but the file is {kind}")
    if not isinstance(data, LineDict):
        data = LineDict(data)
    data.source = str(path)
    return data


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _load_json(text: str, path: str) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}, line {e.lineno}: not valid JSON: {e.msg}") from e
    except _DuplicateKey as e:  # json keeps the last silently: a second `layers` would replace the first
        try:  # the YAML reader says the same with the line
            _yaml_with_lines(text)
        except SpecError as with_line:
            raise SpecError(f"{path}, {with_line}") from None
        except yaml.YAMLError:
            pass
        raise SpecError(f"{path}: key {e.args[0]!r} appears twice in the same object; keep one") from None
    try:  # the same data with line numbers, when YAML reads the JSON identically
        with_lines = _yaml_with_lines(text)
    except (yaml.YAMLError, SpecError):
        return data
    return with_lines if with_lines == data else data


#: More values than any real spec has: YAML aliases can nest into an exponential expansion ("billion laughs").
MAX_SPEC_VALUES = 100_000


def plain(value: Any, where: str = "spec", _budget: list[int] | None = None) -> Any:
    """A deep copy of ``value`` as plain JSON data (dict/list/str/int/float/bool/None), or a SpecError."""
    budget = _budget if _budget is not None else [MAX_SPEC_VALUES]
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(f"the spec expands to more than {MAX_SPEC_VALUES:,} values (nested YAML aliases?); "
                        f"write it without aliases that multiply")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(f"{where}: key {k!r} must be a string (quote it in YAML)")
            out[k] = plain(v, f"{where}.{k}", budget)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]", budget) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{where}: {value} is not a finite number")
        return value
    raise SpecError(f"{where}: {value!r} is a {type(value).__name__}; a spec holds only strings, numbers, "
                    "booleans, null, lists and mappings (quote it in YAML if it is meant as a string)")


@dataclass(frozen=True)
class Where:
    """The place of an entry: its path in the spec, the line in the file, and the block uses that led there."""

    path: str
    line: int | None = None
    source: str | None = None
    via: tuple[str, ...] = field(default_factory=tuple)

    def child(self, suffix: str, line: int | None) -> Where:
        return Where(self.path + suffix, line if line is not None else self.line, self.source, self.via)

    def prefix(self) -> str:
        """``net.yaml, line 14: `` (or ``line 14: `` / nothing) for an error message."""
        if self.source and self.line:
            return f"{self.source}, line {self.line}: "
        if self.source:
            return f"{self.source}: "
        if self.line:
            return f"line {self.line}: "
        return ""

    def error(self, message: str, what: str = "") -> SpecError:
        """A SpecError that names this place: ``<file>, line N: layers[7] linear: <message>``."""
        via = f" (in block used at {', '.join(self.via)})" if self.via else ""
        label = f"{self.path} {what}".strip() + via
        return SpecError(f"{self.prefix()}{label}: {message}" if label else f"{self.prefix()}{message}")


def line_of(container: Any, key: Any) -> int | None:
    """The line of ``container[key]`` when the container came from a file."""
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and 0 <= key < len(container.item_lines):
        return container.item_lines[key]
    return None


# --------------------------------------------------------------------------- writing
class _SpecDumper(yaml.SafeDumper):
    """Block style for structure, flow style for small leaves: ``- conv: {out: 6, kernel: 5}``."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.MappingNode:
    flow = all(not isinstance(v, (dict, list)) for v in data.values()) and len(data) <= 8
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_SpecDumper.add_representer(dict, _represent_dict)
_SpecDumper.add_representer(LineDict, _represent_dict)
_SpecDumper.add_representer(list, _represent_list)
_SpecDumper.add_representer(LineList, _represent_list)


class _BlockStyleEntry(dict):  # type: ignore[type-arg]
    """A one-key layer entry in a list, written in block style: ``- maxpool: 2``, not ``- {maxpool: 2}``."""


def _represent_entry(dumper: yaml.SafeDumper, data: _BlockStyleEntry) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=False)


_SpecDumper.add_representer(_BlockStyleEntry, _represent_entry)


def _mark_entries(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mark_entries(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_BlockStyleEntry({k: _mark_entries(v) for k, v in item.items()})
                if isinstance(item, dict) and len(item) == 1 else _mark_entries(item) for item in value]
    return value


def dump_spec(spec: Mapping[str, Any], fmt: str = "yaml") -> str:
    """Render a spec as YAML (readable: one layer a line) or JSON."""
    data = plain(spec)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt != "yaml":
        raise SpecError(f"unknown spec format {fmt!r}; use yaml or json")
    return yaml.dump(_mark_entries(data), Dumper=_SpecDumper, sort_keys=False, default_flow_style=False, width=120)
