"""What every run uses: reading DICOM / NIfTI, transform presets, datalists, the user's own data
and input discovery. Classification lives at this level (:mod:`.user_data`, :mod:`.inference`);
segmentation in :mod:`.segmentation` (image / label-map pairs, cut into patches). The embedded
datasets a run falls back on when given no data are built by :mod:`rd_components.embedded`.
"""

from .dataset_folder import default_data_dir
from .segmentation import (
    LabelMapOrHiddend,
    SafeVolumeDataset,
    find_volumes,
    read_segmentation_source,
    resolve_segmentation_datalist,
    segmentation_inference_transforms,
    segmentation_items,
    segmentation_training_items,
    segmentation_transforms,
    training_voxel_size,
)
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
