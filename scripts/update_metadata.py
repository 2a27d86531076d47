"""Write the measured test figures of a bundle variant's default run into its metadata file.

``eval_metrics`` of a model-zoo ``metadata.json`` states what the bundle's default run scores.
This copies them from the ``metrics.json`` that the bundle's ``evaluate.yaml`` wrote, so the
figure in the metadata is the figure that was measured, with the run it came from (from
``bundles/rd``; the variants' metadata files are ``configs/metadata*.json``)::

    python -m monai.bundle run training --config_file configs/train.yaml
    python -m monai.bundle run evaluating --config_file "['configs/train.yaml','configs/evaluate.yaml']"
    python ../../scripts/update_metadata.py --bundle rd_classification_2d --metrics eval/evaluate-*/metrics.json

A segmentation variant's evaluation writes MONAI ``MetricsSaver`` files instead; give its
``metrics.csv`` (mean Dice and 95 % Hausdorff distance over the foreground classes, and the
per-class Dice from ``test_mean_dice_summary.csv`` beside it)::

    python ../../scripts/update_metadata.py --bundle rd_segmentation_3d --metrics eval/evaluate-*/metrics.csv"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# run as a file, Python puts scripts/ on sys.path; imported from elsewhere it may not be there
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import bundle_variants  # noqa: E402
from comparison.segmentation import read_segmentation_metrics  # noqa: E402

# metrics.json key without its split prefix -> metadata key (model-zoo bundles name metrics
# without a split; the split is stated beside them)
RENAMES = {"accuracy": "accuracy", "auc": "macro_auc", "macro_f1": "macro_f1"}


def segmentation_eval_metrics(metrics_file: Path, split: str = "test") -> dict:
    """``eval_metrics`` from a segmentation evaluation's ``MetricsSaver`` output (``metrics.csv`` and
    the per-class summary beside it)."""
    figures = read_segmentation_metrics(metrics_file.parent, split)
    return {"mean_dice": round(figures["mean_dice"], 4), "hd95_voxels": round(figures["hd95"], 2),
            "dice_per_foreground_class": {k: round(v, 4) for k, v in figures["dice_per_class"].items()},
            "split": split, "num_samples": figures["num_samples"]}


def eval_metrics(metrics_file: Path) -> dict:
    """``eval_metrics`` entry for ``metadata.json`` from an evaluation's ``metrics.json`` (or a segmentation one's ``metrics.csv``)."""
    if metrics_file.suffix == ".csv":
        return segmentation_eval_metrics(metrics_file)
    result = json.loads(metrics_file.read_text())
    split = result.get("split")
    missing = [f"{split}_{key}" for key in RENAMES if f"{split}_{key}" not in result.get("metrics", {})]
    if missing:
        raise KeyError(f"{metrics_file}: no {missing}; is it the metrics.json of the bundle's evaluate.yaml?")
    figures = {name: round(float(result["metrics"][f"{split}_{key}"]), 4) for key, name in RENAMES.items()}
    return {**figures, "split": result.get("split"), "num_samples": result.get("num_samples")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, choices=tuple(bundle_variants.VARIANTS), help="variant of the RD bundle")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics.json written by the bundle's evaluate.yaml")
    args = parser.parse_args(argv)
    meta_file = bundle_variants.metadata_file(args.bundle)
    metadata = json.loads(meta_file.read_text())
    metadata["eval_metrics"] = eval_metrics(args.metrics)
    meta_file.write_text(json.dumps(metadata, indent=4) + "\n")
    print(f"{meta_file.name}: eval_metrics = {metadata['eval_metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
