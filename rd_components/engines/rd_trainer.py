"""RDTrainer: one-stage co-training of reprogrammer, shared classifier and student."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.transforms import Transform
from monai.utils import convert_to_tensor
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ..foundation.teacher_features import TeacherFeatureSource
from ..networks.deployable import DeployableStudent
from .branches import RDBranches
from .loss_terms import LossTermAverages, record_loss_terms

__all__ = ["RDTrainer"]


class RDTrainer(Trainer):
    """MONAI ``Trainer`` for Reprogramming Distillation.

    Per iteration: the frozen teacher (eval, ``no_grad``, optionally served from a feature
    cache) gives ``h_T``; the reprogrammer maps it to ``z_T (B, d)``; the student gives
    ``z_S (B, d)``; the shared classifier gives both logits; ``loss_function`` (an
    :class:`~rd_components.losses.RDLoss` or any callable with the same keyword interface)
    returns a dict of terms whose ``loss`` is back-propagated. One optimizer covers student,
    classifier and reprogrammer.

    ``network`` is the deployable student (student + shared classifier), so ``CheckpointSaver``,
    ``ValidationHandler`` and lr logging work as with ``SupervisedTrainer``. ``state.output``
    holds ``image``, ``label``, ``pred`` (student logits), ``pred_teacher`` (teacher-branch
    logits) and every term of the dict the loss returned, whatever its names (a new term needs no
    change here); ``state.loss_terms`` records those names, and each term is averaged per epoch
    into ``state.metrics["train_<term>"]`` (:class:`~rd_components.engines.loss_terms.LossTermAverages`).
    All ``IterationEvents`` fire.

    Args:
        device: device of the trainable parts and the teacher.
        max_epochs: number of epochs.
        train_data_loader: loader yielding dicts with ``image`` ``(B, C, *spatial)`` and
            ``label`` ``(B,)`` or ``(B, 1)``; an ``id`` key enables the feature cache.
        network: :class:`DeployableStudent`.
        reprogrammer: the reprogramming module (``None``: no teacher branch).
        teacher: frozen teacher ``(B, C, *spatial) -> (B, C_T, *spatial')`` or a
            :class:`TeacherFeatureSource` (cache in front of the teacher); ``None`` with no
            reprogrammer trains the student alone.
        optimizer: optimizer over student, classifier and reprogrammer parameters.
        loss_function: callable ``(student_logits, teacher_logits, student_features,
            teacher_features, labels) -> dict`` with a ``loss`` key and any other named terms.
        amp: mixed precision on CUDA (ignored with a warning on CPU).
        distributed: wrap the trainable branches in ``DistributedDataParallel``; default: when
            a process group is initialised.
        other args: as :class:`monai.engines.SupervisedTrainer`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: DeployableStudent,
        optimizer: Optimizer,
        loss_function: Callable[..., dict[str, torch.Tensor]],
        reprogrammer: nn.Module | None = None,
        teacher: nn.Module | TeacherFeatureSource | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        distributed: bool | None = None,
    ) -> None:
        device = torch.device(device)
        if amp and device.type != "cuda":
            warnings.warn("RDTrainer: amp=True needs CUDA; training in float32 on this device.", stacklevel=2)
            amp = False
        if (reprogrammer is None) != (teacher is None):
            raise ValueError("RDTrainer: give both a teacher and a reprogrammer, or neither (student alone).")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=None,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.network = network
        self.reprogrammer = reprogrammer
        self.teacher_source = None if teacher is None else TeacherFeatureSource.wrap(teacher)
        if self.teacher_source is not None:
            self.teacher_source.to(device)
        self.optimizer = optimizer
        self.loss_function = loss_function
        self.optim_set_to_none = optim_set_to_none
        branches = self.make_branches(network, reprogrammer)
        if distributed is None:
            distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            # the frozen teacher stays outside DDP: it has no trainable parameters
            ids = [device.index] if device.type == "cuda" else None
            branches = nn.parallel.DistributedDataParallel(branches, device_ids=ids, find_unused_parameters=False)
            self.logger.info("RDTrainer: trainable branches in DistributedDataParallel over %d processes (rank %d).",
                             dist.get_world_size(), dist.get_rank())
        self.branches = branches
        # loss-term averages are attached before the user's handlers so that handlers firing
        # at EPOCH_COMPLETED (MLflow, stats) already see this epoch's values
        LossTermAverages().attach(self)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    # ------------------------------------------------------------------ hooks a sibling method overrides
    def make_branches(self, network: nn.Module, reprogrammer: nn.Module | None) -> nn.Module:
        """The trainable part as one module (one forward per step, as DDP needs)."""
        return RDBranches(network, reprogrammer)

    def teacher_inputs(self, inputs: torch.Tensor, batchdata: dict[str, Any]) -> Any:
        """What the teacher gives the branches for this batch: its feature map, from the cache where possible."""
        with torch.no_grad():
            # the source reads the images' metadata (source files) for its cache keys
            return convert_to_tensor(self.teacher_source(inputs, batchdata), track_meta=False)

    def branch_arguments(self, images: torch.Tensor, teacher_features: Any, targets: torch.Tensor) -> tuple:
        """Positional arguments of the branches' forward for this step (RD: images and teacher features)."""
        return images, teacher_features

    def compute_loss(self, outputs: dict[str, Any], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of one step from the branches' outputs (RD: an :class:`RDLoss` call)."""
        return self.loss_function(
            student_logits=outputs["student_logits"],
            teacher_logits=outputs.get("teacher_logits"),
            student_features=outputs["student_features"],
            teacher_features=outputs.get("teacher_features"),
            labels=targets.reshape(-1).long(),
        )

    # ------------------------------------------------------------------ the step
    def _iteration(self, engine: RDTrainer, batchdata: dict[str, Any]) -> dict:
        """One co-training step; returns ``state.output`` (see class docstring)."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}

        teacher_features = None if engine.teacher_source is None else engine.teacher_inputs(inputs, batchdata)
        # the trainable branches run on plain tensors: MONAI's MetaTensor dispatch on every op
        # of the student, the reprogrammer and the losses cost about a quarter of a CPU step
        images = convert_to_tensor(inputs, track_meta=False)  # a view, no copy
        targets = convert_to_tensor(targets, track_meta=False)

        def _forward_and_loss() -> torch.Tensor:
            outputs = engine.branches(*engine.branch_arguments(images, teacher_features, targets))
            engine.state.output[Keys.PRED] = outputs["student_logits"]
            if "teacher_logits" in outputs:
                engine.state.output["pred_teacher"] = outputs["teacher_logits"]
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            terms = engine.compute_loss(outputs, targets)
            record_loss_terms(engine, terms)
            for name, value in terms.items():
                engine.state.output[name] = value if name == Keys.LOSS else value.detach()
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            return terms[Keys.LOSS]

        engine.branches.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.amp and engine.scaler is not None:
            with torch.autocast("cuda", **engine.amp_kwargs):
                loss = _forward_and_loss()
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss = _forward_and_loss()
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output[Keys.LOSS] = loss.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
