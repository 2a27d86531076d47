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
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from monai.utils import str2bool

__all__ = ["as_bool", "command_line_overrides", "config_ids", "unknown_overrides", "warn_unknown_overrides"]

logger = logging.getLogger(__name__)

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


def warn_unknown_overrides(argv: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Warn once per command-line id that the bundle's config files never define.

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
    for name, near in unknown.items():
        hint = f"did you mean {', '.join('--' + n for n in near)}?" if near else "no id of this bundle is close"
        logger.warning("--%s is not an id of this bundle's configs: it is ignored (%s)", name, hint)
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
