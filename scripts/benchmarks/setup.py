"""What the benchmark measures, instantiated from the bundle variant's training files.

Each configuration the benchmark trains is a ``monai.bundle.ConfigParser`` on the bundle's
training files (the student alone: with ``configs/methods/student.yaml`` merged on top, as
``scripts/compare.py`` does) plus a few overrides set on the parser; the teacher, network,
reprogrammer, loss, optimizer, feature cache and ``train#trainer`` are then taken from it with
``get_parsed_content``. Nothing of the method is rebuilt here, so a change to a bundle config
changes what is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import BUNDLES, REPO

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

# configuration name -> (method overlay merged on train.yaml, teacher feature cache on)
VARIANTS: dict[str, tuple[str | None, bool]] = {
    "student": ("student", False),
    "rd_cached": (None, True),
    "rd_uncached": (None, False),
}


def bundle_config_paths(bundle: str) -> list[Path]:
    """The training files of the bundle variant (``"2d"``, ``"3d"``, ``"seg2d"`` or ``"seg3d"``)."""
    import bundle_variants  # scripts/ is on sys.path

    return bundle_variants.config_files(BUNDLES[bundle], "train")


def config_description(bundle: str) -> str:
    """``train.yaml + segmentation.yaml + ...``: the files a benchmark of ``bundle`` reads, for its report."""
    return " + ".join(p.name for p in bundle_config_paths(bundle))


def method_config_path(method: str, bundle: str = "2d") -> Path:
    """``configs/methods[/segmentation]/<method>.yaml``, the overlay that turns the variant into a baseline."""
    from comparison import method_overlay  # scripts/ is on sys.path: the comparison script's lookup, not a second one

    return method_overlay(BUNDLES[bundle], method)


def read_config(bundle: str, method: str | None = None) -> ConfigParser:
    """The variant's training files, with the ``method`` overlay merged on top when given."""
    import bundle_variants
    from monai.bundle import ConfigParser

    files = [str(p) for p in bundle_config_paths(bundle)] + ([str(method_config_path(method, bundle))] if method else [])
    parser = ConfigParser(ConfigParser.load_config_files(files))
    parser["bundle_root"] = str(bundle_variants.BUNDLE)  # parsed here: outputs go to the bundle folder as a run's would
    return parser


def use_dataset(parser: ConfigParser, data_root: Path, n_train: int | None) -> int:
    """Build (or reuse) the bundle's embedded dataset with ``n_train`` training items; point the parser at it.

    The dataset is the one the bundle's ``resolve_datalist`` builds (same task, format and
    label set), only smaller: ``n_train`` items (default: the bundle's size), at most 12
    validation and test items.

    Returns:
        the number of training items asked for.
    """
    from rd_components.embedded import ensure_dataset
    from rd_components.embedded.classification import default_sizes

    value = parser.get_parsed_content
    task, dims, fmt, label_set = value("task"), value("spatial_dims"), value("data_format"), value("label_set")
    sizes = default_sizes(task, label_set, dims)
    n_train = int(n_train or sizes["n_train"])
    # a folder per size: ensure_dataset rebuilds a folder whose build parameters differ
    root = Path(data_root) / f"n{n_train}"
    datalist = ensure_dataset(root, task=task, spatial_dims=dims, fmt=fmt, label_set=label_set, progress=False,
                              n_train=n_train, n_val=min(sizes["n_val"], 12), n_test=min(sizes["n_test"], 12))
    parser["dataset_dir"] = str(root)
    parser["datalist"] = str(datalist)
    return n_train


def configure(parser: ConfigParser, work: Path, *, epochs: int = 1, use_cache: bool = True,
              cache_dir: Path | None = None, teacher: Any | None = None) -> None:
    """Set the benchmark's overrides on a bundle parser.

    Args:
        parser: a parser from :func:`read_config`.
        work: folder for everything the config could write (outputs, checkpoints, tracking).
        epochs: ``max_epochs`` of ``train#trainer``; every ``run()`` trains this many epochs.
        use_cache: the bundle's ``use_feature_cache``.
        cache_dir: the feature cache's disk folder (a fresh one gives a cold cache); ``None``
            keeps the cache in memory only.
        teacher: an already built ``teacher_net`` to share instead of building one per parser.
    """
    work = Path(work)
    parser["output_dir"] = str(work)
    parser["ckpt_dir"] = str(work / "models")
    parser["tracking_uri"] = (work / "mlruns").resolve().as_uri()
    parser["epochs"] = int(epochs)
    # validation, schedules, export, report and MLflow run per epoch or at the end of training,
    # outside the training step that the configurations are compared on
    parser["train#handlers"] = []
    parser["use_feature_cache"] = bool(use_cache)
    parser["feature_cache_dir"] = None if cache_dir is None else str(cache_dir)
    if teacher is not None:
        parser["teacher_net"] = teacher


@dataclass
class Parts:
    """One configuration as its bundle parser instantiates it (the objects ``train#trainer`` holds)."""

    parser: ConfigParser
    trainer: Any
    network: Any
    reprogrammer: Any | None
    loss: Any
    optimizer: Any
    teacher_source: Any | None
    cache: Any | None


def instantiate(parser: ConfigParser) -> Parts:
    """``train#trainer`` and the parts it was built from, all from ``parser``."""
    trainer = parser.get_parsed_content("train#trainer")
    value = parser.get_parsed_content  # lazy: the very objects the trainer holds
    source = value("teacher_source")
    return Parts(parser=parser, trainer=trainer, network=value("network"), reprogrammer=value("reprogrammer"),
                 loss=value("loss"), optimizer=value("optimizer"), teacher_source=source,
                 cache=None if source is None else source.cache)


def variant_parser(bundle: str, variant: str, data_root: Path, n_train: int | None, work: Path, *,
                   teacher: Any | None = None, cache_dir: Path | None = None, epochs: int = 1) -> ConfigParser:
    """The parser of one configuration of :data:`VARIANTS`, on a dataset of ``n_train`` items."""
    method, use_cache = VARIANTS[variant]
    parser = read_config(bundle, method)
    use_dataset(parser, data_root, n_train)
    configure(parser, work, epochs=epochs, use_cache=use_cache, cache_dir=cache_dir, teacher=teacher)
    return parser


@dataclass
class BenchmarkSetup:
    """The bundle's training config on the benchmark dataset, and the teacher every configuration shares.

    Attributes:
        bundle: ``"2d"`` or ``"3d"``.
        data_root: folder of the benchmark datasets (a subfolder per size).
        work: temporary folder for outputs and feature caches.
        n_train: training items asked for.
        parser: ``train.yaml`` with the benchmark overrides; the settings come from it.
        loader: its ``train#dataloader``.
        teacher: its ``teacher_net``, shared by the configurations built with :func:`build`.
        settings: JSON-ready facts of the config (teacher, student, sizes, optimiser, loader).
    """

    bundle: str
    data_root: Path
    work: Path
    n_train: int
    parser: ConfigParser
    loader: Any
    teacher: Any
    settings: dict[str, Any]

    @property
    def device(self) -> str:
        """The config's ``device`` as a string (``"cpu"``, ``"cuda:0"``)."""
        return self.settings["device"]

    @property
    def amp(self) -> bool:
        """The config's ``amp`` (CUDA only)."""
        return bool(self.settings["amp"])


def load_setup(bundle: str, data_root: Path, n_train: int | None, work: Path) -> BenchmarkSetup:
    """Read the bundle's ``train.yaml``, build the benchmark dataset and the teacher from it."""
    parser = read_config(bundle)
    n_train = use_dataset(parser, data_root, n_train)
    configure(parser, Path(work) / "setup")
    value = parser.get_parsed_content
    loader = value("train#dataloader")
    device = value("device")
    # the real teacher: every configuration shares it, and latency / FLOPs measure it
    teacher = value("teacher_net").materialize().to(device)
    settings = {
        "bundle": bundle,
        "config": config_description(bundle),
        "task": value("task"),
        "spatial_dims": value("spatial_dims"),
        "in_channels": value("in_channels"),
        "patch_size": [int(s) for s in value("patch_size")],
        "teacher": value("teacher"),
        "student": value("student"),
        "student_kwargs": dict(value("student_kwargs")),
        "feature_dim": value("feature_dim"),
        "reprogrammer_hidden": value("reprogrammer_hidden"),
        "num_classes": value("num_classes"),
        "batch_size": value("batch_size"),
        "num_workers": value("num_workers"),
        "learning_rate": value("learning_rate"),
        "weight_decay": value("weight_decay"),
        "loss_weights": dict(value("loss_weights")),
        "temperature": value("temperature"),
        "detach_teacher": value("detach_teacher"),
        "disk_cache": "cache_dir" in (parser.get("feature_cache") or {}),
        "n_train": len(loader.dataset),
        "steps_per_epoch": len(loader),
        "loader": f"train#dataloader of train.yaml: {type(loader.dataset).__name__}, "
                  f"{type(loader.batch_sampler).__name__} batch {loader.batch_sampler.batch_size}, "
                  f"num_workers {loader.num_workers}",
        "device": str(device),
        "amp": bool(value("amp")),
    }
    return BenchmarkSetup(bundle=bundle, data_root=Path(data_root), work=Path(work), n_train=n_train, parser=parser,
                          loader=loader, teacher=teacher, settings=settings)


def configuration_parser(setup: BenchmarkSetup, variant: str, *, cache_dir: Path | None = None, epochs: int = 1,
                         n_train: int | None = None) -> ConfigParser:
    """The parser of ``variant`` on the setup's dataset (or one of ``n_train`` items), sharing its teacher."""
    # the student alone has no teacher branch: it gets no teacher at all
    teacher = None if VARIANTS[variant][0] == "student" else setup.teacher
    return variant_parser(setup.bundle, variant, setup.data_root, n_train or setup.n_train, setup.work / variant,
                          teacher=teacher, cache_dir=cache_dir, epochs=epochs)


def build(setup: BenchmarkSetup, variant: str, *, cache_dir: Path | None = None, epochs: int = 1,
          n_train: int | None = None) -> Parts:
    """A fresh instance of configuration ``variant`` (networks initialised anew, cache empty)."""
    return instantiate(configuration_parser(setup, variant, cache_dir=cache_dir, epochs=epochs, n_train=n_train))
