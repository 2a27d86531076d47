"""Small helpers the bundle configs call: locations, run names, rank checks, datalist metadata."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch.distributed as dist

__all__ = ["bundle_root", "default_data_dir", "unique_run_name", "is_rank0", "read_datalist_info", "class_names",
           "resolve_datalist", "install_one_line_errors"]

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
    from .data.user_data import DataConfigError

    path = Path(path)
    if not path.is_file():
        raise DataConfigError(f"Datalist {path} not found.")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataConfigError(f"Datalist {path} is not valid JSON: {error}") from None
    return {"source": str(path), **{k: v for k, v in info.items() if k not in ("training", "validation", "test", "unlabeled")}}


def class_names(info: dict[str, Any]) -> list[str]:
    """Class names ordered by label index, from a datalist's ``labels`` mapping.

    :func:`resolve_datalist` writes the mapping for the user's data when it has none.

    Raises:
        DataConfigError: no mapping (one line naming the datalist when ``info`` has a ``source``).
    """
    from .data.user_data import DataConfigError

    labels = info.get("labels")
    if not labels:
        where = f" {info['source']}" if info.get("source") else ""
        raise DataConfigError(f"datalist{where} has no 'labels' mapping {{index: name}}: cannot tell the number of classes")
    return [str(labels[k]) for k in sorted(labels, key=int)]


def resolve_datalist(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, seed: int = 0,
                     **build_kwargs: Any) -> str:
    """The datalist to train on.

    ``dataset_dir`` may hold the user's own labelled data in one of three forms, see
    :mod:`rd_components.data.user_data`: a decathlon datalist (``datalist.json`` or a ``.json``
    file, with or without a ``labels`` mapping), a CSV of ``image,label[,split]``, or a folder
    of class sub-folders. It is normalised (class indices, stable ids, a seeded stratified
    validation/test split when missing) into ``<output_dir>/datalist_<name>.json``. Otherwise
    the embedded task described by ``build_kwargs`` is built under ``dataset_dir`` if missing
    (:func:`rd_components.data.ensure_dataset`).

    Raises:
        DataConfigError: one line naming the cause and the file or key.
    """
    from .data.user_data import normalise_user_data

    own = normalise_user_data(dataset_dir, output_dir, int(build_kwargs.get("spatial_dims", 2)), int(seed))
    if own is not None:
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


def _user_error(error: BaseException | None) -> BaseException | None:
    """The first error of ``error``'s chain that is the user's to fix (bad data, path, teacher)."""
    from .data.preflight import BadInputError
    from .data.user_data import DataConfigError
    from .foundation.registry import UnknownTeacherError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (DataConfigError, UnknownTeacherError, BadInputError)):
            return error
        error = error.__cause__ or error.__context__
    return None


def install_one_line_errors() -> None:
    """Print a user mistake that stops a run as one line instead of a config traceback.

    MONAI wraps every failure in a config expression into "Failed to evaluate
    ConfigExpression" tracebacks some 60 lines long; when the root cause is one of ours that
    already names the file, key or value (:class:`~rd_components.data.user_data.DataConfigError`,
    ``UnknownTeacherError``, ``BadInputError``), only its message is printed and the process
    exits with status 1. Set ``RD_TRACEBACK=1`` to see the full traceback. Other errors, and a
    process that installed its own hook, are left alone.
    """
    import sys

    if sys.excepthook is not sys.__excepthook__:
        return
    previous = sys.excepthook

    def hook(kind, error, traceback):
        user = None if os.environ.get("RD_TRACEBACK") else _user_error(error)
        if user is None:
            previous(kind, error, traceback)
            return
        print(f"Error: {user}", file=sys.stderr)
        sys.stderr.flush()

    sys.excepthook = hook
