"""The split a model was trained on, kept beside the model: scoring it never re-draws one.

A datalist is resolved again every time a bundle config is parsed: the user's data folder is
normalised anew (:func:`rd_components.data.normalise_user_data`), and a folder without an
explicit test split gets its test items drawn with the run's ``seed`` from whatever images the
folder holds *now*. Evaluating after images were added, or with another ``--seed``, would then
score training items as test items. So training writes the exact datalist it used to
``<ckpt_dir>/datalist.json`` (:class:`TrainedSplitSaver`; absolute paths, plus a digest of the
items of every split), and evaluation reads that file (:func:`trained_datalist`), saying in one
warning line when the data folder no longer gives the same items.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["TRAINED_SPLIT", "TrainedSplitSaver", "datalist_digest", "items_digest", "save_trained_split",
           "trained_datalist", "trained_split_digest"]

logger = logging.getLogger(__name__)

#: file name of the saved split in a checkpoint folder
TRAINED_SPLIT = "datalist.json"
#: the item lists of a datalist (``unlabeled``: images the distillation terms train on)
_LISTS = ("training", "validation", "test", "unlabeled")
#: key of the saved datalist that records where it came from and its items' digest
_RECORD = "trained_split"


def _absolute(item: dict, base: Path) -> dict:
    """``item`` with its paths made absolute as MONAI's ``load_decathlon_datalist`` makes them
    (``image`` always, other fields when the joined path exists), so the saved copy loads the
    same files from any folder."""
    from monai.data.decathlon_datalist import _compute_path

    return {k: _compute_path(base, v, check_path=k != "image") for k, v in item.items()}


def _item_key(item: dict) -> str:
    """What identifies an item: its id (the path and content digest for the user's data) or
    its image path, and its label."""
    return json.dumps([item.get("id") or item.get("image"), item.get("label")], default=str)


def items_digest(datalist: dict) -> str:
    """sha256 of the items (id or path, label) of every split of a datalist whose paths are
    absolute; the order of items within a split does not count."""
    keys = {name: sorted(_item_key(it) for it in datalist.get(name) or []) for name in _LISTS}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> dict:
    """A datalist JSON with its items' paths made absolute against its folder."""
    raw = json.loads(path.read_text())
    lists = {name: [_absolute(it, path.parent) for it in raw[name]] for name in _LISTS if isinstance(raw.get(name), list)}
    return {**raw, **lists}


def datalist_digest(path: str | os.PathLike) -> str:
    """:func:`items_digest` of the datalist file at ``path`` (relative paths resolved against its folder)."""
    return items_digest(_read(Path(path)))


def save_trained_split(datalist: str | os.PathLike | dict, ckpt_dir: str | os.PathLike,
                       source: str | os.PathLike | None = None) -> str:
    """Write the datalist a run trains on to ``<ckpt_dir>/datalist.json``; return its path.

    Args:
        datalist: the datalist file the run resolved, or its content already read (with
            absolute paths, as :class:`TrainedSplitSaver` keeps it).
        ckpt_dir: the run's checkpoint folder (beside ``model.pt``).
        source: where ``datalist`` was read from, when it is given as a dict.

    The copy has absolute paths and records ``trained_split: {source, digest}`` (the digest of
    its items, :func:`items_digest`). An unchanged file is left alone.
    """
    if not isinstance(datalist, dict):
        source, datalist = datalist, _read(Path(datalist))
    content = {k: v for k, v in datalist.items() if k != _RECORD}
    content[_RECORD] = {"source": None if source is None else str(source), "digest": items_digest(content)}
    target = Path(ckpt_dir) / TRAINED_SPLIT
    text = json.dumps(content, indent=1) + "\n"
    if not (target.is_file() and target.read_text() == text):
        atomic_write_text(target, text)
    return str(target)


def trained_split_digest(ckpt_dir: str | os.PathLike) -> str | None:
    """The items digest recorded in ``<ckpt_dir>/datalist.json``; ``None`` when there is none."""
    target = Path(ckpt_dir) / TRAINED_SPLIT
    if not target.is_file():
        return None
    return json.loads(target.read_text()).get(_RECORD, {}).get("digest")


class TrainedSplitSaver:
    """Ignite handler of the validator: saves the run's datalist beside ``model.pt``.

    It reads the datalist when the config builds it (with the run's items), and writes
    ``<ckpt_dir>/datalist.json`` at the end of the first validation, after the
    ``CheckpointSaver`` listed before it has written ``model.pt``: a run stopped before its first
    checkpoint leaves the earlier model's split in place.

    Args:
        datalist: the datalist file the run trains on (the bundle's ``@datalist``).
        ckpt_dir: the run's checkpoint folder.
    """

    def __init__(self, datalist: str | os.PathLike, ckpt_dir: str | os.PathLike) -> None:
        self.source = str(datalist)
        self.content = _read(Path(datalist))
        self.ckpt_dir = Path(ckpt_dir)
        self.saved = False

    def attach(self, engine: Any) -> None:
        """Save after each of ``engine``'s epochs (once per run)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any = None) -> None:
        """Write the split (first call only)."""
        if not self.saved:
            save_trained_split(self.content, self.ckpt_dir, source=self.source)
            self.saved = True


def _test_ids(datalist: dict) -> set[str]:
    return {str(it.get("id") or it.get("image")) for it in datalist.get("test") or []}


def _change(saved: dict, target: Path, fresh: Callable[[], Any]) -> str | None:
    """What differs between the saved split and the data now, in a few words; ``None`` when nothing does."""
    recorded = saved.get(_RECORD, {}).get("digest")
    if recorded != items_digest(saved):
        return f"the items of {target} no longer match the digest recorded at training (edited since?)"
    try:
        now_path = Path(str(fresh()))
        now = _read(now_path)
    except Exception as error:  # noqa: BLE001 - the check must not stop the scoring of the saved split
        return f"the data cannot be resolved now to check it against the trained split ({error})"
    if items_digest(now) == recorded:
        return None
    added = len(_test_ids(now) - _test_ids(saved))
    return (f"the data resolved now ({now_path}) differs from the split trained on (another --seed, or the data "
            f"folder changed): its test split has {len(now.get('test') or [])} items, {added} of them not in the "
            f"trained test split")


def trained_datalist(ckpt_dir: str | os.PathLike, fresh: Callable[[], Any]) -> str:
    """The datalist to score a model of ``ckpt_dir`` on: the split it was trained on.

    Args:
        ckpt_dir: the model's checkpoint folder, holding ``datalist.json`` from its training.
        fresh: resolves the datalist from the data as it is now (the training config's
            ``datalist`` expression); called to check the saved split against it, and used in
            its place for a model trained before splits were saved.

    Returns:
        ``<ckpt_dir>/datalist.json``; ``fresh()`` (with one warning line) when it does not exist.
        When the data resolved now gives other items, one warning line says so and the saved
        split is still returned: its test items are those the model never trained on.
    """
    target = Path(ckpt_dir) / TRAINED_SPLIT
    if not target.is_file():
        path = str(fresh())
        logger.warning("No %s: the model was trained before its split was saved beside it; scoring the split "
                       "resolved now (%s), which may hold items it trained on if the data or --seed changed.",
                       target, path)
        return path
    saved = json.loads(target.read_text())
    change = _change(saved, target, fresh)
    if change is not None:
        logger.warning("Scoring the %d test items of %s that the model was trained against: %s.",
                       len(saved.get("test") or []), target, change)
    return str(target)
