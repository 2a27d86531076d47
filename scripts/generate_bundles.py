"""Render the bundles' configs from one copy of the shared wiring.

Every bundle folder is self-contained (``configs/train.yaml``, ``evaluate.yaml``,
``inference.yaml``, ``multi_gpu_train.yaml`` next to ``metadata.json``), so a copy of the folder
runs anywhere ``rd_components`` is installed. The configs are not written by hand: each file of
``bundles/templates/<template>/`` is rendered into ``bundles/<name>/configs/`` with the values of
``bundles/templates/bundles.yaml`` (``{{key}}`` placeholders; a missing or unused value is an
error). ``tests/test_generated_bundles.py`` fails when a committed config drifts from its
template, so a change to the shared wiring is made once, in the template, then::

    python scripts/generate_bundles.py          # rewrite the configs
    python scripts/generate_bundles.py --check  # exit 1 and list the configs that differ

A new bundle of an existing kind is a new entry in ``bundles.yaml``; a new kind (segmentation)
is a new template folder. Files of ``bundles/templates/shared/`` (``multi_gpu_train.yaml``) are
rendered into every bundle whose template folder has no file of the same name. Blocks that
several kinds' files hold alike (an inference config's paths and model, its run sections) live
once in ``bundles/templates/partials/<name>.yaml`` and are pulled in with ``{{> name}}`` on a
line of its own; a partial may hold ``{{key}}`` values itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
TEMPLATES_DIR = BUNDLES_DIR / "templates"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
PARTIAL = re.compile(r"^\{\{>\s*(\w+)\s*\}\}\n", re.MULTILINE)
GENERATED_NOTE = "# Generated from bundles/templates/{template}/{file} by scripts/generate_bundles.py: edit the template, not this file.\n"


def include_partials(text: str, partials_dir: Path, source: str) -> str:
    """Replace every ``{{> name}}`` line of ``text`` by ``partials_dir/name.yaml`` (one level: partials do not nest)."""

    def substitute(match: re.Match) -> str:
        path = partials_dir / f"{match.group(1)}.yaml"
        if not path.is_file():
            raise KeyError(f"{source}: no partial {path.name} in bundles/templates/partials")
        body = path.read_text()
        return body if body.endswith("\n") else body + "\n"

    return PARTIAL.sub(substitute, text)


def render(text: str, values: dict, source: str) -> tuple[str, set[str]]:
    """Replace every ``{{key}}`` of ``text`` by ``str(values[key])``; return the text and the keys used."""
    used: set[str] = set()

    def substitute(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"{source}: no value for {{{{{key}}}}} in bundles/templates/bundles.yaml")
        used.add(key)
        return str(values[key])

    return PLACEHOLDER.sub(substitute, text), used


def rendered_configs(bundles_dir: Path = BUNDLES_DIR) -> dict[Path, str]:
    """Every generated config path (under ``bundles_dir``) mapped to the text it must hold."""
    spec = yaml.safe_load((bundles_dir / "templates" / "bundles.yaml").read_text())
    outputs: dict[Path, str] = {}
    for name, entry in spec.items():
        template = entry["template"]
        values = {"name": name, **entry.get("values", {})}
        used: set[str] = {"name"}
        own = sorted((bundles_dir / "templates" / template).glob("*.yaml"))
        shared = [p for p in sorted((bundles_dir / "templates" / "shared").glob("*.yaml")) if p.name not in {o.name for o in own}]
        for source in own + shared:
            folder = source.parent.name
            label = f"templates/{folder}/{source.name}"
            text = include_partials(source.read_text(), bundles_dir / "templates" / "partials", label)
            text, keys = render(text, values, label)
            used |= keys
            outputs[bundles_dir / name / "configs" / source.name] = GENERATED_NOTE.format(template=folder, file=source.name) + text
        unused = set(values) - used
        if unused:
            raise KeyError(f"bundles.yaml: {name} sets {sorted(unused)}, which no template of '{template}' uses")
    return outputs


def drifted(bundles_dir: Path = BUNDLES_DIR) -> list[Path]:
    """Generated configs whose committed text differs from the templates' rendering (or is missing)."""
    return [path for path, text in rendered_configs(bundles_dir).items()
            if not path.is_file() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a config differs from its template")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted()
        for path in stale:
            print(f"out of date: {path.relative_to(BUNDLES_DIR.parent)}")
        if stale:
            print("run: python scripts/generate_bundles.py")
        return 1 if stale else 0
    for path, text in rendered_configs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(BUNDLES_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
