"""Segmentation data: image / label-map pairs in the forms users keep them (MSD, nnU-Net, a CSV,
a datalist), checked and cut into patches (:mod:`.datalist`), the training and validation
pipeline (:mod:`.pipeline`) and whole volumes for inference (:mod:`.inference`)."""

from .datalist import resolve_segmentation_datalist, segmentation_training_items
from .forms import read_segmentation_source
from .inference import SafeVolumeDataset, find_volumes, segmentation_inference_transforms
from .pipeline import LabelMapOrHiddend, segmentation_items, segmentation_transforms, training_voxel_size

__all__ = [
    "LabelMapOrHiddend",
    "SafeVolumeDataset",
    "find_volumes",
    "read_segmentation_source",
    "resolve_segmentation_datalist",
    "segmentation_inference_transforms",
    "segmentation_items",
    "segmentation_training_items",
    "segmentation_transforms",
    "training_voxel_size",
]
