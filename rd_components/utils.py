"""Small helpers the bundle configs call: locations, run names, rank checks, datalist metadata."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch.distributed as dist

__all__ = ["bundle_root", "default_data_dir", "unique_run_name", "is_rank0", "read_datalist_info", "class_names"]

_REPO_ROOT = Path(__file__).resolve().parents[1]


def bundle_root(name: str) -> str:
    """Folder of bundle ``name``: ``$RD_BUNDLES_DIR/<name>`` or ``<repository>/bundles/<name>``."""
    base = Path(os.environ.get("RD_BUNDLES_DIR", _REPO_ROOT / "bundles"))
    path = base / name
    if not path.is_dir():
        raise FileNotFoundError(f"Bundle folder {path} not found; pass --bundle_root <folder of the bundle>.")
    return str(path)


def default_data_dir() -> str:
    """Where the embedded datasets are built: ``$RD_DATA_DIR`` or ``<repository>/data``."""
    return str(Path(os.environ.get("RD_DATA_DIR", _REPO_ROOT / "data")))


def unique_run_name(prefix: str = "rd") -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-<6 hex>``: MLflow re-attaches to unfinished runs of the same name."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def as_bool(value: Any) -> bool:
    """A command-line flag as a bool: the bundle CLI passes ``--augment true`` as the *string*
    ``"true"`` (only ``True`` is a Python literal), and ``"false"`` would otherwise be truthy.

    ``monai.utils.str2bool`` does the parsing; this adds what a config value can also be
    (``None``, 0/1 integers, on/off).

    Raises:
        ValueError: for anything else, naming the value.
    """
    from monai.utils import str2bool

    if value is None:
        return False
    text = str(value).strip().lower()
    try:
        return str2bool({"on": "true", "off": "false", "none": "false", "": "false"}.get(text, text))
    except ValueError:
        raise ValueError(f"expected true or false, got {value!r}") from None


def is_rank0() -> bool:
    """True outside distributed runs and on rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def read_datalist_info(path: str | os.PathLike) -> dict[str, Any]:
    """The datalist JSON without its split lists (``num_classes``, ``labels``, ``spatial_dims``...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Datalist {path} not found.")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Datalist {path} is not valid JSON: {error}") from None
    return {k: v for k, v in info.items() if k not in ("training", "validation", "test")}


def class_names(info: dict[str, Any]) -> list[str]:
    """Class names ordered by label index, from a datalist's ``labels`` mapping."""
    labels = info.get("labels")
    if not labels:
        raise ValueError("Datalist has no 'labels' mapping {index: name}: cannot tell the number of classes.")
    return [str(labels[k]) for k in sorted(labels, key=int)]


def resolve_datalist(dataset_dir: str | os.PathLike, **build_kwargs: Any) -> str:
    """The datalist to train on.

    ``<dataset_dir>/datalist.json`` when the user's folder has one; otherwise the embedded task
    described by ``build_kwargs`` is built under ``dataset_dir`` if missing
    (:func:`rd_components.data.ensure_dataset`).
    """
    own = Path(dataset_dir) / "datalist.json"
    if own.is_file():
        return str(own)
    from .data import ensure_dataset

    return str(ensure_dataset(dataset_dir, **build_kwargs))


def write_executed_config(folder: str | os.PathLike, argv: list[str] | None = None) -> str | None:
    """Write the config this process runs (its ``--config_file`` files merged, with the
    command-line overrides applied) to ``<folder>/executed_config.json``; return the path.

    Returns ``None`` when the process was not started with ``--config_file`` (e.g. a workflow
    built in Python), since there is then no file-based config to record.
    """
    import sys

    from monai.bundle import ConfigParser

    args = list(sys.argv if argv is None else argv)
    if "--config_file" not in args:
        return None
    position = args.index("--config_file")
    files = args[position + 1]
    if files.startswith("["):
        files = [f.strip(" '\"") for f in files.strip("[]").split(",") if f.strip()]
    parser = ConfigParser(ConfigParser.load_config_files(files))
    rest = args[position + 2 :] + args[:position]
    for i, token in enumerate(rest):
        if token.startswith("--") and token not in ("--config_file", "--meta_file", "--logging_file") and i + 1 < len(rest):
            value = rest[i + 1]
            try:
                parsed: Any = json.loads(value)
            except (json.JSONDecodeError, TypeError):
                parsed = value
            parser[token[2:]] = parsed
    path = Path(folder) / "executed_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    ConfigParser.export_config_file(parser.get(), str(path), fmt="json", indent=2)
    return str(path)


def trainable_parameters(*modules: Any) -> list:
    """Parameters that require grad of the given modules, skipping ``None`` and duplicates.

    One optimizer covers student, shared classifier, reprogrammer and any loss with learned
    parts (the hint projection), whichever of them a method uses.
    """
    seen: set[int] = set()
    params = []
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params
