"""Real source volumes the embedded tasks are cut from, and their global intensity scaling.

Two sources exist offline on every machine of this project (see DATA.md):

* the MNI152 2009 T1 template with grey/white-matter probability maps and a brain mask, shipped
  inside the ``nilearn`` wheel (BSD-3-Clause);
* the Colin27 single-subject T1 (``ch2.nii.gz``) and the AAL atlas drawn on it, shipped by the
  Debian package ``mricron-data`` (BSD-3-Clause per Debian's copyright file).

Every volume is scaled once, globally, to 0..1 and quantised to ``QUANT_LEVELS`` steps, so
that the NIfTI (float32) and DICOM (uint16 + RescaleSlope) copies of a patch hold exactly the
same real values. Patches are never rescaled individually: tissue contrast is the signal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.transforms import percentile_scale
from ..data.writers import QUANT_LEVELS, RESCALE_SLOPE

__all__ = [
    "SourceVolume",
    "normalise_global",
    "load_mni152",
    "load_colin27_aal",
    "mricron_template_dir",
    "aal_lobe_of_code",
    "source_fingerprint",
    "LOBE_NAMES",
]


MRICRON_ENV = "RD_MRICRON_TEMPLATES"
MRICRON_DEFAULT_DIR = "/usr/share/mricron/templates"

#: lobe classes of the Colin27/AAL task, in label order
LOBE_NAMES = (
    "frontal",
    "temporal",
    "parietal",
    "occipital",
    "limbic",
    "insula",
    "deep grey nuclei",
    "cerebellum",
)

# AAL's own grouping: the thousands digit of the code in aal.nii.txt's third column
# (2xxx frontal incl. precentral/rolandic/SMA/olfactory/rectus, 3xxx insula, 4xxx cingulum,
# hippocampus, parahippocampal, amygdala, 5xxx calcarine..fusiform, 6xxx postcentral..
# paracentral, 7xxx caudate..thalamus, 8xxx heschl/temporal, 9xxx cerebellum and vermis).
_AAL_DIGIT_TO_LOBE = {2: 0, 8: 1, 6: 2, 5: 3, 4: 4, 3: 5, 7: 6, 9: 7}


@dataclass
class SourceVolume:
    """One real volume ready for patch sampling.

    Attributes:
        quantised: ``(X, Y, Z)`` uint16, real intensity = value * ``RESCALE_SLOPE`` in 0..1.
        affine: ``(4, 4)`` voxel -> RAS mm, axis-aligned with positive spacing.
        label_maps: named voxel-wise arrays ``(X, Y, Z)`` the task derives labels from.
        intensity: how ``quantised`` was made (written into the datalist).
        source: one provenance/licence line.
        fingerprint: changes when the underlying files change (part of the build manifest).
        names: atlas region number -> (name, code), when the source has an atlas.
    """

    quantised: np.ndarray
    affine: np.ndarray
    label_maps: dict[str, np.ndarray] = field(default_factory=dict)
    intensity: dict = field(default_factory=dict)
    source: str = ""
    fingerprint: str = ""
    names: dict[int, tuple[str, int]] = field(default_factory=dict)


def normalise_global(volume: np.ndarray, percentile: float = 99.5) -> tuple[np.ndarray, dict]:
    """Scale a whole volume once to 0..1 and quantise it.

    Args:
        volume: ``(X, Y, Z)`` raw intensities.
        percentile: the volume's percentile mapped to 1.0; brighter voxels are clipped.

    Returns:
        ``(quantised, info)``: ``(X, Y, Z)`` uint16 in ``0..QUANT_LEVELS`` and a JSON-able dict.
    """
    vol = np.asarray(volume, dtype=np.float32)
    scale = percentile_scale(vol, percentile)
    real = np.clip(vol / np.float32(scale), 0.0, 1.0)
    quantised = np.rint(real * QUANT_LEVELS).astype(np.uint16)
    info = {
        "normalisation": "global: whole volume divided by its percentile, clipped to [0, 1]; never per patch",
        "percentile": percentile,
        "scale": scale,
        "range": [0.0, 1.0],
        "quantisation_levels": QUANT_LEVELS,
        "rescale_slope": RESCALE_SLOPE,
        "nifti_dtype": "float32",
        "dicom_stored": "uint16, real = stored * RescaleSlope + RescaleIntercept(0)",
    }
    return quantised, info


def _check_axis_aligned(affine: np.ndarray, what: str) -> None:
    lin = affine[:3, :3]
    if not (np.allclose(lin, np.diag(np.diag(lin))) and (np.diag(lin) > 0).all()):
        raise ValueError(f"{what}: expected an axis-aligned RAS affine with positive spacing, got\n{affine}")


def _prepare_t1(t1, what: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Affine (checked axis-aligned) and globally normalised, quantised intensities of a T1 image."""
    affine = np.asarray(t1.affine, dtype=np.float64)
    _check_axis_aligned(affine, what)
    quantised, info = normalise_global(np.asarray(t1.dataobj))
    return affine, quantised, info


def load_mni152() -> SourceVolume:
    """Load the 1 mm MNI152 T1 template, GM/WM probability maps and brain mask from nilearn.

    Returns:
        a :class:`SourceVolume` whose ``label_maps`` hold ``"gm"``, ``"wm"`` (float32 in 0..1)
        and ``"mask"`` (bool), all ``(197, 233, 189)``.
    """
    import nilearn
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    for name, img in (("gm", gm), ("wm", wm), ("mask", mask)):
        if img.shape != t1.shape or not np.allclose(img.affine, t1.affine):
            raise ValueError(f"nilearn MNI152 {name} map is not on the T1 template grid")
    affine, quantised, info = _prepare_t1(t1, "MNI152 template")
    return SourceVolume(
        quantised=quantised,
        affine=affine,
        label_maps={
            "gm": np.asarray(gm.dataobj, dtype=np.float32),
            "wm": np.asarray(wm.dataobj, dtype=np.float32),
            "mask": np.asarray(mask.dataobj) > 0,
        },
        intensity=info,
        source=(
            f"MNI152 2009 T1 template, grey/white-matter probability maps and brain mask as shipped "
            f"by nilearn {nilearn.__version__} (BSD-3-Clause); patches derived by rd_components.data"
        ),
        fingerprint=source_fingerprint("mni152_tissue"),
    )


def mricron_template_dir(template_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding ``ch2.nii.gz``, ``aal.nii.gz`` and ``aal.nii.txt``.

    Order: the argument, then ``$RD_MRICRON_TEMPLATES``, then Debian's install location.

    Raises:
        FileNotFoundError: one line naming the package to install.
    """
    folder = Path(template_dir or os.environ.get(MRICRON_ENV) or MRICRON_DEFAULT_DIR)
    missing = [f for f in ("ch2.nii.gz", "aal.nii.gz", "aal.nii.txt") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Colin27/AAL templates not found in {folder} (missing {', '.join(missing)}): "
            f"run `apt-get install mricron-data` or set {MRICRON_ENV} to the templates folder"
        )
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_fingerprint(task: str, template_dir: str | os.PathLike | None = None) -> str:
    """A cheap string that changes when a task's source files change (part of the build manifest)."""
    if task == "mni152_tissue":
        import nilearn

        return f"nilearn=={nilearn.__version__}"
    folder = mricron_template_dir(template_dir)
    return ";".join(f"{f}={_sha256(folder / f)[:16]}" for f in ("ch2.nii.gz", "aal.nii.gz", "aal.nii.txt"))


def _read_aal_names(path: Path) -> dict[int, tuple[str, int]]:
    names: dict[int, tuple[str, int]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            names[int(parts[0])] = (parts[1], int(parts[2]))
    if not names:
        raise ValueError(f"no region names in {path}")
    return names


def aal_lobe_of_code(code: int) -> int:
    """Lobe class index (see :data:`LOBE_NAMES`) of an AAL region code such as 2001."""
    digit = code // 1000
    if digit not in _AAL_DIGIT_TO_LOBE:
        raise ValueError(f"AAL code {code} has no lobe mapping")
    return _AAL_DIGIT_TO_LOBE[digit]


def load_colin27_aal(template_dir: str | os.PathLike | None = None) -> SourceVolume:
    """Load the Colin27 T1 and the AAL atlas drawn on it (Debian ``mricron-data``).

    Returns:
        a :class:`SourceVolume` with ``label_maps["aal"]`` ``(181, 217, 181)`` int16 region
        numbers (0 = outside the atlas) and ``names`` = {region number: (name, AAL code)}.
    """
    import nibabel as nib

    folder = mricron_template_dir(template_dir)
    t1 = nib.load(str(folder / "ch2.nii.gz"))
    aal = nib.load(str(folder / "aal.nii.gz"))
    # the atlas is only meaningful if drawn on the very same voxel grid as the T1
    if t1.shape != aal.shape or not np.allclose(t1.affine, aal.affine):
        raise ValueError(f"{folder}: ch2.nii.gz and aal.nii.gz are not on the same grid")
    affine, quantised, info = _prepare_t1(t1, "Colin27 ch2.nii.gz")
    return SourceVolume(
        quantised=quantised,
        affine=affine,
        label_maps={"aal": np.asarray(aal.dataobj).astype(np.int16)},
        intensity=info,
        source=(
            "Colin27 single-subject T1 (ch2) and the AAL atlas (Tzourio-Mazoyer et al. 2002) as shipped by "
            "Debian's mricron-data (BSD-3-Clause per Debian copyright); patches derived by rd_components.data"
        ),
        fingerprint=source_fingerprint("colin27_aal", folder),
        names=_read_aal_names(folder / "aal.nii.txt"),
    )
