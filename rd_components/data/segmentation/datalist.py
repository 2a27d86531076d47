"""The datalist a segmentation run trains on: the user's own pairs cut into patches, or the embedded task.

:func:`resolve_segmentation_datalist` reads the user's data at ``--dataset_dir`` (the forms of
:mod:`.forms`: an MSD / nnU-Net folder, a decathlon datalist, a CSV), and only when
it holds none builds the embedded task there. The user's folder is never written to: what a run
trains on is written under ``output_dir``, in the embedded task's own layout, so that the rest
of the bundle (the teacher feature cache, validation, the saved split, evaluation, inference)
treats both alike:

- missing validation / test splits are drawn per image (seeded, :data:`~.user_data.HOLDOUT_FRACTION`
  of the images each), so no image has patches in two splits; the split is recorded in the datalist,
  which training saves beside the model (:class:`~rd_components.data.TrainedSplitSaver`);
- every pair is checked first (:mod:`.checks`); a bad one stops the run with one
  line per bad pair (or is dropped with ``on_bad_input: skip``);
- each volume is turned to RAS, resampled to the first training image's voxel size and scaled
  by its own 99.5th percentile, as inference prepares a volume
  (:func:`~rd_components.data.segmentation_inference_transforms`, with ``pixdim`` read back from
  the patches), then training and validation images give ``patch_size`` patches (cubes in 3D,
  axial squares in 2D: the 2D bundle trains on axial slices of the volumes), two thirds of them
  centred on labelled voxels; test images are kept whole (3D) or as every fourth axial slice (2D)
  for sliding-window evaluation; unlabelled images (``imagesTs/``, images without a label map,
  ``--unlabeled_dir``) give patches with hidden labels;
- class names are the data's ``labels`` (numbered ``0..K-1`` from the label maps without one);
- ids are ``<image path>/p<k>@<content digest of the image>``, so a changed file never gets a
  stale cached teacher feature; the patch folder is rebuilt only when a file, the classes or a
  setting changed (a manifest, as the embedded builds).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import BadInputError, DataConfigError
from ...embedded.segmentation import TEST_SLICE_STEP, build_segmentation_dataset
from ..dataset_folder import DATALIST, build_atomically, default_data_dir
from ..datalist import UNLABELED, read_datalist
from ..inference import find_inputs
from ..item_ids import content_digest, stable_id, with_digest
from ..sampling import PatchExtractor, split_rng
from ..user_data import HOLDOUT_FRACTION
from ..writers import RESCALE_SLOPE, write_label_nifti, write_nifti
from .checks import checked_pairs, resample_pair
from .forms import SegmentationSource, read_segmentation_source
from .pipeline import segmentation_items, training_voxel_size

__all__ = ["resolve_segmentation_datalist", "segmentation_training_items"]

logger = logging.getLogger(__name__)

#: bump when the patches cut from the same files change
USER_SEG_VERSION = "2"  # 2: the datalist is named after the data (was its temporary build folder)
#: validation patches per training patch
VALIDATION_SHARE = 0.25
#: share of patches centred on a labelled (non-background) voxel
FOREGROUND_SHARE = 2 / 3
_SUB = {"training": "train", "validation": "val", "test": "test", "unlabeled": "unlabeled"}


def _draw_splits(splits: dict[str, list[dict]], seed: int, where: Path) -> tuple[dict[str, list[dict]], list[str]]:
    """The three splits, a missing validation / test one drawn from the training images (seeded, per image)."""
    out = {k: list(v) for k, v in splits.items()}
    training, generated = out["training"], []
    for split in ("test", "validation"):
        if out.get(split):
            continue
        if len(training) < 2:
            raise DataConfigError(f"{where}: too few labelled images to draw a {split} split (3 or more needed)")
        n = max(1, round(HOLDOUT_FRACTION * len(training)))
        drawn = set(split_rng(seed, "user-split", "segmentation", split).permutation(len(training))[:n].tolist())
        out[split] = [it for i, it in enumerate(training) if i in drawn]
        training = [it for i, it in enumerate(training) if i not in drawn]
        generated.append(split)
    out["training"] = training
    return out, generated


def _quantised(image: np.ndarray) -> np.ndarray:
    # the embedded patches' encoding: 0..1 in steps of RESCALE_SLOPE (2**-12), exact in float32
    return np.rint(np.clip(image, 0.0, 1.0) / RESCALE_SLOPE).astype(np.uint16)


class _PatchWriter:
    """Cuts a prepared volume into the files of one split under ``folder`` and lists their items."""

    def __init__(self, folder: Path, patch_size: int, spatial_dims: int, seed: int) -> None:
        self.folder, self.patch, self.spatial_dims, self.seed = folder, int(patch_size), int(spatial_dims), int(seed)
        self.count: dict[str, int] = {}

    def _stem(self, split: str) -> str:
        index = self.count.get(split, 0)
        self.count[split] = index + 1
        (self.folder / _SUB[split]).mkdir(parents=True, exist_ok=True)
        return f"{_SUB[split]}/{_SUB[split]}_{index:05d}"

    def _write(self, split: str, item_id: str, image: np.ndarray, label: np.ndarray | None, affine: np.ndarray) -> dict:
        stem = self._stem(split)
        write_nifti(self.folder / f"{stem}_image.nii.gz", _quantised(image), affine)
        out = {"image": f"{stem}_image.nii.gz", "label": UNLABELED, "id": item_id}
        if label is not None:
            write_label_nifti(self.folder / f"{stem}_label.nii.gz", label, affine)
            out["label"] = f"{stem}_label.nii.gz"
        return out

    def patches(self, split: str, source_id: str, image: np.ndarray, label: np.ndarray | None, affine: np.ndarray,
                n: int) -> list[dict]:
        """``n`` patches of ``image`` ``(X, Y, Z)`` (and its label map), a share centred on labelled voxels."""
        name, _, digest = source_id.rpartition("@")
        rng = split_rng(self.seed, "user-patches", split, source_id)
        foreground = np.argwhere(label > 0) if label is not None else np.zeros((0, 3), dtype=int)
        cut_image = PatchExtractor(image, affine, self.patch, self.spatial_dims)
        cut_label = PatchExtractor(label, affine, self.patch, self.spatial_dims) if label is not None else None
        items = []
        for k in range(n):
            if len(foreground) and rng.random() < FOREGROUND_SHARE:
                centre = foreground[rng.integers(len(foreground))]
            else:
                centre = np.array([rng.integers(s) for s in image.shape])
            patch, patch_affine = cut_image(centre)
            label_patch = cut_label(centre)[0] if cut_label is not None else None
            items.append(self._write(split, with_digest(f"{name}/p{k}", None, digest), patch, label_patch, patch_affine))
        return items

    def whole(self, split: str, source_id: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> list[dict]:
        """The whole volume (3D) or every fourth axial slice of it (2D), for sliding-window evaluation."""
        if self.spatial_dims == 3:
            return [self._write(split, source_id, image, label, affine)]
        name, _, digest = source_id.rpartition("@")
        depth = image.shape[2]
        items = []
        for z in range(min(TEST_SLICE_STEP // 2, depth - 1), depth, TEST_SLICE_STEP):
            shift = np.eye(4)
            shift[2, 3] = z
            items.append(self._write(split, with_digest(f"{name}/z{z}", None, digest), image[:, :, z], label[:, :, z],
                                     affine @ shift))
        return items


def _prepared(data: dict, pixdim: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(image (X, Y, Z) float32 0..1, label (X, Y, Z) uint8 or None, affine (4, 4))`` on the ``pixdim`` grid."""
    out = resample_pair(data, pixdim)
    label = out["label"][0].numpy().astype(np.uint8) if "label" in out else None
    return out["image"][0].numpy(), label, np.asarray(out["image"].affine, dtype=float)


def _spacing(affine: np.ndarray) -> list[float]:
    return [float(v) for v in np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)]


def _with_ids(items: list[dict], base: Path, digests: dict[str, str]) -> list[dict]:
    out = []
    for item in items:
        for key in ("image", "label"):
            if isinstance(item.get(key), str) and not Path(item[key]).exists():
                raise DataConfigError(f"{key} {item[key]} not found")
        out.append({**item, "id": stable_id(item["image"], base, None, digests),
                    **({"label_digest": content_digest(Path(item["label"]), digests)} if "label" in item else {})})
    return out


def _write_user_patches(folder: Path, source: SegmentationSource, splits: dict[str, list[dict]], params: dict,
                        generated: list[str]) -> None:
    """Check every pair, then write the patches, whole test images and ``datalist.json`` into ``folder``."""
    spatial_dims, seed = params["spatial_dims"], params["seed"]
    writer = _PatchWriter(folder, params["patch_size"], spatial_dims, seed)
    names = source.names
    per_image = max(1, math.ceil(params["n_train"] / max(1, len(splits["training"]))))
    per_val = max(1, math.ceil(params["n_train"] * VALIDATION_SHARE / max(1, len(splits["validation"]))))
    order = [(split, it) for split in ("training", "validation", "test", "unlabeled") for it in splits.get(split, [])]
    items: dict[str, list[dict]] = {k: [] for k in _SUB}
    pixdim, values = None, set()
    for split, item, data, found in checked_pairs(order, len(names) if names else None, params["on_bad_input"]):
        values |= found
        pixdim = pixdim or _spacing(data["image"].affine)  # the first good training image's voxel size
        image, label, affine = _prepared(data, pixdim)
        if split == "test":
            items[split] += writer.whole(split, item["id"], image, label, affine)
        else:
            items[split] += writer.patches(split, item["id"], image, label, affine, per_val if split == "validation" else per_image)
    for split in ("training", "validation", "test"):
        if not items[split]:
            raise BadInputError(f"No usable image / label pair left in the {split} split of {source.path}.")
    names = names or [str(i) for i in range(max(values) + 1)]
    datalist = {
        "name": source.name, "source": str(source.path), "labels": {str(i): n for i, n in enumerate(names)},
        "num_classes": len(names), "spatial_dims": spatial_dims, "patch_size": [params["patch_size"]] * spatial_dims,
        "pixdim": pixdim, "split_seed": seed, "generated_splits": generated, "patches_per_image": per_image,
        "images": {k: [it["id"] for it in splits.get(k, [])] for k in _SUB},
        **{k: v for k, v in items.items() if v or k != "unlabeled"},
    }
    (folder / DATALIST).write_text(json.dumps(datalist, indent=1))
    logger.info("user segmentation data %s: %d classes (%s); images %s; %s drawn with seed %d; patches written to %s",
                source.path, len(names), ", ".join(names), ", ".join(f"{k} {len(splits.get(k, []))}" for k in _SUB),
                " and ".join(generated) or "no split", seed, folder)


def resolve_segmentation_datalist(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                                  seed: int = 0, spatial_dims: int = 3, task: str = "mni152_tissue",
                                  patch_size: int | None = None, n_train: int | None = None,
                                  on_bad_input: str = "error") -> str:
    """The datalist a segmentation run trains on.

    ``dataset_dir`` holding the user's data (:func:`~.forms.read_segmentation_source`):
    the pairs are checked and cut into ``n_train`` training patches of ``patch_size`` (and a
    quarter as many validation patches), written with their ``datalist.json`` to
    ``<output_dir>/<data name>_seg_<2d|3d>/`` (nothing is written into ``dataset_dir``);
    otherwise the embedded ``task`` is built under ``dataset_dir``
    (:func:`~rd_components.embedded.build_segmentation_dataset`).

    Raises:
        DataConfigError: the data cannot be read (one line naming the file or key).
        BadInputError: bad image / label pairs, one line each (``on_bad_input="error"``).
    """
    source = read_segmentation_source(dataset_dir)
    if source is None:
        return str(build_segmentation_dataset(dataset_dir, task, spatial_dims, patch_size, n_train=n_train))
    if not patch_size or int(patch_size) < 32 or int(patch_size) % 16:
        # 16 would leave the U-Net's bottleneck one voxel wide, which its instance norm refuses mid-training
        raise DataConfigError(f"patch_size must be a multiple of 16 and at least 32 (the U-Net halves it four times), "
                              f"got {patch_size}")
    digests: dict[str, str] = {}
    base = source.path if source.path.is_dir() else source.path.parent
    splits, generated = _draw_splits(source.splits, int(seed), source.path)
    splits = {k: _with_ids(v, base, digests) for k, v in splits.items()}
    splits["unlabeled"] = _with_ids(source.unlabeled, base, digests)
    params = {"version": USER_SEG_VERSION, "source": str(source.path), "names": source.names,
              "spatial_dims": int(spatial_dims), "patch_size": int(patch_size), "n_train": int(n_train or 120),
              "seed": int(seed), "on_bad_input": on_bad_input,
              "items": {k: [[it["id"], it.get("label_digest")] for it in v] for k, v in splits.items()}}
    # absolute: the bundles' output_dir is relative to where they run, and the saved split must load from anywhere
    root = Path(os.path.abspath(output_dir if output_dir is not None else default_data_dir()))
    name = f"{source.name}_seg_{int(spatial_dims)}d"
    build_atomically(root, name, params, lambda folder: _write_user_patches(folder, source, splits, params, generated))
    return str(root / name / DATALIST)


def _unlabeled_patches(folder: str | os.PathLike, output_dir: Path, raw: dict, datalist: Path, spatial_dims: int,
                       patch_size: int, seed: int, per_image: int, on_bad_input: str) -> list[dict]:
    """Patches (hidden labels) of every volume under ``folder``, cut as the training images were."""
    folder = Path(folder)
    digests: dict[str, str] = {}
    volumes = [{"image": it["image"], "id": "unlabeled/" + stable_id(it["image"], folder, None, digests)}
               for it in find_inputs(folder, 3)]
    pixdim = raw.get("pixdim") or training_voxel_size(datalist)
    params = {"version": USER_SEG_VERSION, "unlabeled_dir": str(folder.resolve()), "spatial_dims": spatial_dims,
              "patch_size": patch_size, "seed": seed, "per_image": per_image, "pixdim": pixdim,
              "on_bad_input": on_bad_input, "items": [it["id"] for it in volumes]}

    def write(target: Path) -> None:
        writer = _PatchWriter(target, patch_size, spatial_dims, seed)
        items = []
        for _, item, data, _ in checked_pairs([("unlabeled", it) for it in volumes], None, on_bad_input):
            image, _, affine = _prepared(data, pixdim)
            items += writer.patches("unlabeled", item["id"], image, None, affine, per_image)
        (target / DATALIST).write_text(json.dumps({"unlabeled": items}, indent=1))

    name = f"unlabeled_{folder.name}_seg_{spatial_dims}d"
    build_atomically(output_dir, name, params, write)
    written = output_dir / name / DATALIST
    return [{**it, "image": str(written.parent / it["image"])} for it in read_datalist(written)["unlabeled"]]


def segmentation_training_items(datalist: str | os.PathLike, label_fraction: float = 1.0, seed: int = 0,
                                unlabeled_dir: str | os.PathLike | None = None,
                                output_dir: str | os.PathLike | None = None, spatial_dims: int = 3,
                                on_bad_input: str = "error") -> list[dict]:
    """Every training item: the datalist's training patches (a ``label_fraction`` keeps its label
    map, :func:`~rd_components.data.segmentation_items`), its ``unlabeled`` patches, and patches
    of every volume under ``unlabeled_dir`` (checked first, cut as the training images were, as
    many per volume as per training image, written under ``output_dir``), each with
    ``label = UNLABELED``: a map of ``-1`` once loaded, so they train the distillation terms only.
    """
    items = segmentation_items(datalist, "training", label_fraction, seed)
    path = Path(datalist)
    raw = read_datalist(path)
    items += [{**it, "image": str(path.parent / it["image"]), "label": UNLABELED} for it in raw.get("unlabeled", [])]
    if unlabeled_dir:
        sources = max(1, len(raw.get("images", {}).get("training", [])))  # the embedded task: one volume
        per_image = int(raw.get("patches_per_image") or max(1, len(raw.get("training", [])) // sources))
        patch = int((raw.get("patch_size") or [64])[0])
        out = Path(os.path.abspath(output_dir if output_dir is not None else default_data_dir()))
        items += _unlabeled_patches(unlabeled_dir, out, raw, path, int(spatial_dims), patch, int(seed), per_image,
                                    on_bad_input)
    return items
