"""The four variants of the RD bundle (``bundles/rd``) and the config files each one merges.

The bundle's ``configs/train.yaml`` is the whole training wiring (2D classification); the other
variants are small files merged on it with MONAI's own ``--config_file "[...]"``. The scripts
(comparison grids, benchmarks, metadata) name a variant by the bundle its results were known by
before the variants shared one folder, so that every results file keeps its ``bundle`` column.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLE", "VARIANTS", "config_files", "kind", "methods_dir", "metadata_file"]

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "rd"
#: variant -> (task kind, files merged on train.yaml, its metadata file)
VARIANTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "rd_classification_2d": ("classification", (), "metadata.json"),
    "rd_classification_3d": ("classification", ("3d.yaml",), "metadata_3d.json"),
    "rd_segmentation_2d": ("segmentation", ("segmentation.yaml",), "metadata_segmentation.json"),
    "rd_segmentation_3d": ("segmentation", ("segmentation.yaml", "segmentation_3d.yaml"), "metadata_segmentation_3d.json"),
}
#: use -> files merged after the training files, per task kind (inference stands alone)
_USES = {
    "train": {"classification": (), "segmentation": ()},
    "evaluate": {"classification": ("evaluate.yaml",), "segmentation": ("evaluate.yaml", "segmentation_evaluate.yaml")},
    "multi_gpu_train": {"classification": ("multi_gpu_train.yaml",), "segmentation": ("multi_gpu_train.yaml",)},
}
_INFERENCE = {"classification": ("inference.yaml",), "segmentation": ("inference.yaml", "segmentation_inference.yaml")}


def _check(variant: str) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"{variant}: not a variant of the RD bundle ({', '.join(VARIANTS)})")


def kind(variant: str) -> str:
    """``"classification"`` or ``"segmentation"``."""
    _check(variant)
    return VARIANTS[variant][0]


def config_files(variant: str, use: str = "train", bundle: str | Path = BUNDLE) -> list[Path]:
    """The ``--config_file`` list of ``variant`` for ``use`` (``train``, ``evaluate``,
    ``multi_gpu_train`` or ``inference``), in merge order, from ``bundle`` (a copied bundle folder too)."""
    task_kind = kind(variant)
    folder = Path(bundle) / "configs"
    if use == "inference":
        return [folder / name for name in _INFERENCE[task_kind]]
    if use not in _USES:
        raise ValueError(f"use must be train, evaluate, multi_gpu_train or inference, got {use!r}")
    names = ("train.yaml", *VARIANTS[variant][1], *_USES[use][task_kind])
    return [folder / name for name in names]


def methods_dir(variant: str, bundle: str | Path = BUNDLE) -> Path:
    """The bundle's method overlays for ``variant``'s task kind: ``configs/methods[/segmentation]``."""
    folder = Path(bundle) / "configs" / "methods"
    return folder / "segmentation" if kind(variant) == "segmentation" else folder


def metadata_file(variant: str, bundle: str | Path = BUNDLE) -> Path:
    """The variant's ``metadata.json`` (MONAI reads ``configs/metadata.json``; pass the others with ``--meta_file``)."""
    _check(variant)
    return Path(bundle) / "configs" / VARIANTS[variant][2]
