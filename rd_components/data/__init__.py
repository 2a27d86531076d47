"""Embedded datasets, datalists and DICOM/NIfTI transform presets.

Tasks are cut from real scans and real expert atlases that exist offline (see DATA.md):
``mni152_tissue`` (nilearn's MNI152 template, pip only) and ``colin27_aal`` (Colin27 + AAL from
Debian's ``mricron-data``). Each is written as NIfTI or DICOM with a decathlon-style datalist. The user's own data: :mod:`.user_data`
(classification) and :mod:`.segmentation_data` (image / label-map pairs, cut into patches).
"""

from .build import DATA_VERSION, FORMATS, build_dataset, dataset_name, default_data_dir, ensure_dataset
from .segmentation_inference import SafeVolumeDataset, find_volumes, segmentation_inference_transforms
from .segmentation_pipeline import LabelMapOrHiddend, segmentation_items, segmentation_transforms, training_voxel_size
from .segmentation_data import resolve_segmentation_datalist, segmentation_training_items
from .segmentation_forms import read_segmentation_source
from .segmentation_tasks import SEG_CLASS_NAMES, SEG_TASKS, build_segmentation_dataset, segmentation_label_map
from .datalist import (
    UNLABELED,
    class_counts,
    class_names,
    hide_labels,
    is_labeled,
    labeled_items,
    load_datalist,
    read_datalist,
    read_datalist_info,
    stratified_indices,
    subsample_training,
    unlabeled_folder_items,
)
from .mixing import LabeledRatioBatchSampler, labeled_ratio_sampler
from .inference import SafeInferenceDataset, find_inputs
from .tasks import LABEL_SETS, TASKS
from .preflight import preflight_items
from .transforms import (
    LoadMedicalImaged,
    OrientRASd,
    SqueezeSingletonSpatiald,
    augmentation_transforms,
    classification_transforms,
    has_random_transforms,
)
from .dicom import read_dicom_frame
from .item_ids import stable_id
from .user_data import normalise_user_data, resolve_datalist
from .trained_split import TrainedSplitSaver, datalist_digest, save_trained_split, trained_datalist, trained_split_digest
from .views import FixedViewsd, flip_view_axes

__all__ = [
    "SafeVolumeDataset",
    "find_volumes",
    "segmentation_inference_transforms",
    "LabelMapOrHiddend",
    "segmentation_items",
    "resolve_segmentation_datalist",
    "segmentation_training_items",
    "read_segmentation_source",
    "segmentation_transforms",
    "training_voxel_size",
    "SEG_CLASS_NAMES",
    "SEG_TASKS",
    "build_segmentation_dataset",
    "segmentation_label_map",
    "UNLABELED",
    "hide_labels",
    "is_labeled",
    "labeled_items",
    "unlabeled_folder_items",
    "LabeledRatioBatchSampler",
    "labeled_ratio_sampler",
    "FixedViewsd",
    "flip_view_axes",
    "augmentation_transforms",
    "preflight_items",
    "SafeInferenceDataset",
    "find_inputs",
    "DATA_VERSION",
    "FORMATS",
    "TASKS",
    "LABEL_SETS",
    "build_dataset",
    "ensure_dataset",
    "dataset_name",
    "load_datalist",
    "read_datalist",
    "stratified_indices",
    "subsample_training",
    "class_counts",
    "classification_transforms",
    "has_random_transforms",
    "SqueezeSingletonSpatiald",
    "LoadMedicalImaged",
    "OrientRASd",
    "read_dicom_frame",
    "normalise_user_data",
    "resolve_datalist",
    "default_data_dir",
    "read_datalist_info",
    "class_names",
    "stable_id",
    "TrainedSplitSaver",
    "datalist_digest",
    "save_trained_split",
    "trained_datalist",
    "trained_split_digest",
]
