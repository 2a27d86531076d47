"""The embedded datasets: real scans and expert atlases that exist offline (``docs/DATA.md``), cut
into classification patches or segmentation label maps and written as NIfTI or DICOM with a
decathlon-style datalist. One task table (:mod:`.tasks`), the sources (:mod:`.sources`), the
classification planning (:mod:`.classification`) and build (:mod:`.build`), the segmentation
build (:mod:`.segmentation`); every build goes through
:func:`rd_components.data.dataset_folder.build_atomically` (one lock, one manifest).

>>> from rd_components.embedded import ensure_dataset
>>> datalist = ensure_dataset("data", task="mni152_tissue", spatial_dims=2)  # doctest: +SKIP
"""

from .build import DATA_VERSION, build_dataset, dataset_name, ensure_dataset
from .segmentation import build_segmentation_dataset, segmentation_label_map
from .tasks import FORMATS, LABEL_SETS, SEGMENTATION_CLASSES, TASKS, resolve_label_set

__all__ = [
    "DATA_VERSION",
    "FORMATS",
    "LABEL_SETS",
    "SEGMENTATION_CLASSES",
    "TASKS",
    "build_dataset",
    "build_segmentation_dataset",
    "dataset_name",
    "ensure_dataset",
    "resolve_label_set",
    "segmentation_label_map",
]
