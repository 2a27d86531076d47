"""The embedded tasks, in one table: what each is cut from, its classification label sets and its
segmentation classes. Classification patches are planned in :mod:`.classification`, label maps
in :mod:`.segmentation`; both are built by one atomic folder build.

``mni152_tissue`` (pip only, every bundle's default): nilearn's MNI152 T1 with grey / white
matter / CSF from its tissue probability maps. ``colin27_aal`` (needs Debian ``mricron-data``):
the Colin27 T1 with the AAL atlas, grouped by lobe (8) or left/right-merged region (62).
"""

from __future__ import annotations

from .sources import LOBE_NAMES

__all__ = ["TASKS", "LABEL_SETS", "SEGMENTATION_CLASSES", "FORMATS", "resolve_label_set"]

TASKS = ("mni152_tissue", "colin27_aal")
#: classification label sets of each task (``None``: the task has one)
LABEL_SETS: dict[str, tuple[str | None, ...]] = {"mni152_tissue": (None,), "colin27_aal": ("lobe", "region")}
#: segmentation classes of each task, background first
SEGMENTATION_CLASSES: dict[str, tuple[str, ...]] = {
    "mni152_tissue": ("background", "grey matter", "white matter", "CSF"),
    "colin27_aal": ("background", *LOBE_NAMES),
}
#: file formats the classification datasets are written in
FORMATS = ("nifti", "dicom")


def resolve_label_set(task: str, label_set: str | None) -> str | None:
    """Validate ``label_set`` for ``task`` (``colin27_aal`` defaults to ``"lobe"``)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "colin27_aal" and label_set is None:
        return "lobe"
    if label_set not in LABEL_SETS[task]:
        raise ValueError(f"task {task!r} takes label_set in {LABEL_SETS[task]}, got {label_set!r}")
    return label_set
