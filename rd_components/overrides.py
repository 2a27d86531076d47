"""Command-line ids a bundle never reads: said in one line instead of silently ignored.

``python -m monai.bundle run ... --some_id value`` *adds* ``some_id`` to the config when no
config file defines it. Nothing reads it then, so a mistyped ``--lable_fraction 0.1`` trains on
every label and ``--resume true`` on a bundle without resume starts from scratch, both without
a word. :func:`warn_unknown_overrides`, called from a bundle's ``initialize`` block, compares
the ids given on the command line (and in ``--args_file``) with the ids the config files define
and warns once per unknown id, naming the nearest known ones.

:func:`as_bool` reads a command-line flag's value as a bool.
"""

from __future__ import annotations

import ast
import difflib
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from monai.utils import str2bool

__all__ = ["as_bool", "command_line_overrides", "config_ids", "read_ids", "unknown_overrides", "unread_overrides",
           "warn_unknown_overrides"]

logger = logging.getLogger(__name__)
#: command-line ids already checked in this process
_WARNED: set[str] = set()

#: arguments of ``monai.bundle run`` / ``ConfigWorkflow`` themselves: not config ids
RUN_ARGUMENTS = frozenset({
    "config_file", "meta_file", "logging_file", "args_file", "init_id", "run_id", "final_id", "tracking",
    "workflow_type", "workflow", "workflow_name", "properties_path",
})


def command_line_overrides(argv: Sequence[str]) -> dict[str, str | None]:
    """``{id: value}`` of the ``--id value`` / ``--id=value`` pairs of a bundle command line.

    ``argv`` is ``sys.argv`` of ``python -m monai.bundle run [run_id] --config_file ... --id value``;
    values stay the strings typed (``None`` for a flag with no value).
    """
    found: dict[str, str | None] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token[2:].partition("=")
            if sep:
                found[name] = value
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                found[name] = tokens[i + 1]
                i += 1
            else:
                found[name] = None
        i += 1
    return found


def config_ids(config: Any, prefix: str = "") -> set[str]:
    """Every id of a parsed config: ``a``, ``a#b``, ``a#0#c`` ... (list items by index)."""
    ids: set[str] = set()
    items: Iterable[tuple[Any, Any]]
    if isinstance(config, dict):
        items = config.items()
    elif isinstance(config, list):
        items = enumerate(config)
    else:
        return ids
    for key, value in items:
        name = f"{prefix}{key}"
        ids.add(name)
        ids |= config_ids(value, name + "#")
    return ids


def _config_files(value: str | None) -> list[str]:
    """The ``--config_file`` value as a list: a path, ``"['a.yaml','b.yaml']"`` or ``a.yaml,b.yaml``."""
    if not value:
        return []
    text = value.strip()
    if text.startswith(("[", "(")):
        try:
            return [str(v) for v in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            return []
    return [part for part in text.split(",") if part] if not Path(text).is_file() and "," in text else [text]


def unknown_overrides(config: dict, overrides: Iterable[str]) -> dict[str, list[str]]:
    """``{id: nearest known ids}`` for every override id that ``config`` does not define.

    A leading ``+`` (MONAI's "extend this list / dict") is ignored; an id inside a list or dict
    that the config defines (``train#handlers#0#enabled``) counts as known when its parent is.
    """
    known = config_ids(config)
    top = sorted(k for k in config if isinstance(k, str))
    unknown: dict[str, list[str]] = {}
    for raw in overrides:
        name = raw.lstrip("+").replace("::", "#")
        if not name or name in RUN_ARGUMENTS or name in known:
            continue
        parent = name.rsplit("#", 1)[0] if "#" in name else None
        if parent is not None and parent in known:
            continue  # a new key inside a known block (e.g. a handler argument): MONAI passes it on
        candidates = top if parent is None else sorted(k for k in known if k.startswith(name.split("#", 1)[0]))
        unknown[name] = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return unknown


_REFERENCE = re.compile(r"@(\w+(?:#\w+)*)")


def _value(config: Any, name: str) -> Any:
    node = config
    for part in name.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def read_ids(config: dict, roots: Iterable[str]) -> set[str]:
    """The ids a run of ``roots`` (``initialize``, ``training``, ...) reads: the roots, every id an
    ``@reference`` in what they read names, recursively, and everything inside each of them."""
    from monai.bundle import ConfigParser

    read: set[str] = set()
    pending = [r for r in roots if _value(config, r) is not None]
    while pending:
        name = pending.pop()
        if name in read:
            continue
        read.add(name)
        value = _value(config, name)
        read |= config_ids(value, name + "#")
        for sub_name, text in _strings(value, name):
            for ref in _REFERENCE.findall(ConfigParser.resolve_relative_ids(sub_name, text).replace("::", "#")):
                pending.append(ref)
    return read


def _strings(value: Any, name: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{name}#{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{name}#{index}")


def unread_overrides(config: dict, overrides: Iterable[str], roots: Iterable[str]) -> list[str]:
    """The override ids that ``config`` defines but a run of ``roots`` never reads (for example
    ``--resume`` on a configuration whose trainer has no resume handler)."""
    read = read_ids(config, roots)
    known = config_ids(config)
    unread = []
    for raw in overrides:
        name = raw.lstrip("+").replace("::", "#")
        if name not in known or name in RUN_ARGUMENTS:
            continue
        parts = name.split("#")
        ancestors = {"#".join(parts[:k]) for k in range(1, len(parts) + 1)}
        if not ancestors & read and not any(r.startswith(name + "#") for r in read):
            unread.append(name)
    return unread


def _run_id(argv: Sequence[str]) -> str:
    """The run id of ``... monai.bundle run <run_id> --...`` (``run`` when none is given)."""
    tokens = list(argv)
    for i, token in enumerate(tokens[:-1]):
        if token in ("run", "run_workflow") and not tokens[i + 1].startswith("-"):
            return tokens[i + 1]
    value = command_line_overrides(tokens).get("run_id")
    return value or "run"


def warn_unknown_overrides(argv: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Warn once per command-line id that the bundle's config files never define or never read.

    For a bundle config's ``initialize`` list (``"$rd_components.overrides.warn_unknown_overrides()"``):
    reads the command line (``sys.argv`` by default), the config files it names and its
    ``--args_file``. A command line that names no config file (the bundle run from Python)
    is not checked.

    Returns:
        ``{id: nearest known ids}`` of the ids warned about.
    """
    from monai.bundle import ConfigParser

    args = command_line_overrides(sys.argv if argv is None else argv)
    overrides = {k: v for k, v in args.items() if k not in RUN_ARGUMENTS}
    files = _config_files(args.get("config_file"))
    if args.get("args_file"):
        try:
            extra = ConfigParser.load_config_file(args["args_file"])
        except (OSError, ValueError):
            extra = {}
        files = files or _config_files(str(extra.get("config_file") or ""))
        overrides.update({k: v for k, v in extra.items() if k not in RUN_ARGUMENTS})
    if not files or not overrides:
        return {}
    try:
        config = ConfigParser.load_config_files(files)
    except (OSError, ValueError):
        return {}  # MONAI itself reports a config file it cannot read
    unknown = unknown_overrides(config, overrides)
    if _WARNED >= set(overrides):
        return unknown  # said already in this process (``run initialize`` runs initialize twice)
    _WARNED.update(overrides)
    for name, near in unknown.items():
        hint = f"did you mean {', '.join('--' + n for n in near)}?" if near else "no id of this bundle is close"
        logger.warning("--%s is not an id of this bundle's configs: it is ignored (%s)", name, hint)
    roots = ["imports", "initialize", _run_id(sys.argv if argv is None else argv), "finalize"]
    for name in unread_overrides(config, overrides, roots):
        logger.warning("--%s is not read by this configuration (%s): it is ignored", name, " + ".join(Path(f).name for f in files))
        unknown[name] = []
    return unknown


def as_bool(value: Any) -> bool:
    """A command-line flag as a bool: the bundle CLI passes ``--augment true`` as the *string*
    ``"true"`` (only ``True`` is a Python literal), and ``"false"`` would otherwise be truthy.

    ``monai.utils.str2bool`` does the parsing; this adds what a config value can also be
    (``None``, 0/1 integers, on/off).

    Raises:
        ValueError: for anything else, naming the value.
    """
    if value is None:
        return False
    text = str(value).strip().lower()
    try:
        return str2bool({"on": "true", "off": "false", "none": "false", "": "false"}.get(text, text))
    except ValueError:
        raise ValueError(f"expected true or false, got {value!r}") from None
