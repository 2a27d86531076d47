"""Small helpers the bundle configs call: locations, run names, rank checks, datalist metadata."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .privacy import redact_paths

__all__ = ["bundle_root", "running_workflow", "default_data_dir", "unique_run_name", "is_rank0", "read_datalist_info", "class_names",
           "resolve_datalist", "install_one_line_errors", "read_segmentation_metrics"]

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _on_stack(pick: Callable[[Any], Any]) -> Any:
    """First non-``None`` ``pick(frame)`` from the caller's frame outwards, or ``None``."""
    import inspect

    frame = inspect.currentframe()
    try:
        while frame is not None:
            found = pick(frame)
            if found is not None:
                return found
            frame = frame.f_back
        return None
    finally:
        del frame


def running_workflow() -> Any | None:
    """The MONAI ``ConfigWorkflow`` whose config is being evaluated, or ``None``.

    MONAI hands config expressions no reference to the workflow that runs them, so it is found on
    the call stack: the nearest frame whose ``self`` is a ``ConfigWorkflow``. That covers
    ``python -m monai.bundle run`` and ``monai.bundle.run(...)`` / ``ConfigWorkflow`` in Python alike.
    """
    from monai.bundle import ConfigWorkflow

    return _on_stack(lambda frame: frame.f_locals.get("self") if isinstance(frame.f_locals.get("self"), ConfigWorkflow) else None)


def _config_folder(frame: Any) -> Path | None:
    # a running ConfigWorkflow knows its config folder; MONAI's other bundle commands
    # (verify_net_in_out, ckpt_export, ...) keep the config file in a local of the monai.bundle
    # function that parses it
    from monai.bundle import ConfigWorkflow

    owner = frame.f_locals.get("self")
    if isinstance(owner, ConfigWorkflow):
        return Path(owner.config_root_path)
    if str(frame.f_globals.get("__name__", "")).startswith("monai.bundle"):
        for name in ("config_file_", "config_file"):
            value = frame.f_locals.get(name)
            first = value[0] if isinstance(value, (list, tuple)) and value else value
            if isinstance(first, (str, os.PathLike)) and Path(first).is_file():
                return Path(first).parent
    return None


def bundle_root() -> str:
    """Folder of the bundle being run: the folder above the ``configs/`` folder of the first
    config file given to MONAI's bundle command (``run``, ``verify_net_in_out``,
    ``ckpt_export``, ...), wherever the bundle was copied. Scripts that parse a config
    themselves set ``bundle_root`` in the parser; users may pass ``--bundle_root``.
    """
    folder = _on_stack(_config_folder)
    if folder is None:
        raise RuntimeError("bundle_root is only known while a MONAI bundle command reads the bundle's config; "
                           "set it explicitly (--bundle_root <folder of the bundle>).")
    root = folder.resolve()
    return str(root.parent if root.name == "configs" else root)


def default_data_dir() -> str:
    """Where the embedded datasets are built: ``$RD_DATA_DIR``; in a source checkout
    ``<repository>/data``; for an installed package ``~/.cache/rd_components/data``."""
    if "RD_DATA_DIR" in os.environ:
        return os.environ["RD_DATA_DIR"]
    if (_REPO_ROOT / "bundles").is_dir() and (_REPO_ROOT / "rd_components").is_dir():
        return str(_REPO_ROOT / "data")
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rd_components" / "data")


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
    if not isinstance(info, dict):
        raise DataConfigError(f"Datalist {path} must be a JSON object with 'training', 'labels'..., got a {type(info).__name__}")
    return {"source": str(path), **{k: v for k, v in info.items() if k not in ("training", "validation", "test", "unlabeled")}}


def class_names(info: dict[str, Any]) -> list[str]:
    """Class names ordered by label index, from a datalist's ``labels`` mapping.

    :func:`resolve_datalist` writes the mapping for the user's data when it has none.

    Raises:
        DataConfigError: no mapping, or one whose keys are not the indices ``0..K-1`` (one line
            naming the datalist when ``info`` has a ``source``).
    """
    from .data.user_data import DataConfigError, mapping_names

    labels = info.get("labels")
    where = f" {info['source']}" if info.get("source") else ""
    if not labels:
        raise DataConfigError(f"datalist{where} has no 'labels' mapping {{index: name}}: cannot tell the number of classes")
    return mapping_names(labels, f"datalist{where}")


def read_segmentation_metrics(folder: str | os.PathLike, split: str = "test") -> dict[str, Any]:
    """The figures a segmentation ``evaluate.yaml`` run left in ``folder`` (MONAI ``MetricsSaver`` CSVs).

    Returns:
        ``mean_dice`` and ``hd95`` as ``metrics.csv`` holds them (MONAI's ``MeanDice`` /
        ``HausdorffDistance``: mean over every non-NaN image-class pair), ``dice_per_class``
        (``class0`` = the first foreground class: mean over images, from
        ``<split>_mean_dice_summary.csv``) and ``num_samples`` (images evaluated).

    Raises:
        KeyError: ``metrics.csv`` lacks ``<split>_mean_dice`` or ``<split>_hd95``.
    """
    import csv

    folder = Path(folder)
    with open(folder / "metrics.csv", newline="") as handle:
        metrics = dict(row for row in csv.reader(handle) if len(row) == 2)
    missing = [key for key in (f"{split}_mean_dice", f"{split}_hd95") if key not in metrics]
    if missing:
        raise KeyError(f"{folder / 'metrics.csv'}: no {missing}; is it a segmentation bundle's evaluate.yaml output?")
    with open(folder / f"{split}_mean_dice_summary.csv", newline="") as handle:
        per_class = {row["class"]: float(row["mean"]) for row in csv.DictReader(handle) if row["class"] != "mean"}
    with open(folder / f"{split}_mean_dice_raw.csv", newline="") as handle:
        images = sum(1 for _ in csv.DictReader(handle))
    return {"mean_dice": float(metrics[f"{split}_mean_dice"]), "hd95": float(metrics[f"{split}_hd95"]),
            "dice_per_class": per_class, "num_samples": images}


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


def write_executed_config(folder: str | os.PathLike) -> str | None:
    """Write the config this process runs (its config files merged, command-line overrides
    applied, as the running MONAI workflow holds it) to ``<folder>/executed_config.json``;
    return the path, or ``None`` when no MONAI workflow runs this process.
    """
    from monai.bundle import ConfigParser

    workflow = running_workflow()
    if workflow is None:
        return None
    path = Path(folder) / "executed_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # absolute paths (a PACS export folder may be named after the patient) become digests,
    # credentials in URIs are masked: the file is uploaded to MLflow
    ConfigParser.export_config_file(redact_paths(workflow.parser.get()), str(path), fmt="json", indent=2)
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
