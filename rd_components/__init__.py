"""Reprogramming Distillation (RD) of medical foundation models into small students.

Subpackages: ``networks`` (reprogrammer, shared classifier, students, deployable student),
``losses`` (CKA, KD, hint, RD), ``foundation`` (frozen teachers, their feature cache and feature
source, the teacher linear probe), ``engines`` (RDTrainer and RDEvaluator), ``handlers``
(checkpoints and resume, reports, export, MLflow registry), ``data`` (what every run uses:
reading, transform presets, datalists, the user's data; ``data.segmentation`` for label maps),
``embedded`` (the real embedded datasets, built when a run is given no data), ``errors`` (the user-facing errors; it imports no other module of
the package), ``tracking`` (run names, executed config, MLflow URI checks), ``overrides``
(command-line values). ``data``, ``foundation``, ``losses`` and ``networks`` never import
``engines`` or ``handlers``. Importing the package imports all of them, so bundle
configs can write ``$import rd_components`` and then ``rd_components.data.X``. Importing it changes
nothing else: the bundles' ``initialize`` blocks install the one-line error handler
(:func:`rd_components.errors.install_one_line_errors`).
"""

from . import data, embedded, engines, errors, foundation, handlers, losses, networks, overrides, privacy, tracking

__version__ = "0.1.0"


__all__ = ["data", "embedded", "engines", "errors", "foundation", "handlers", "losses", "networks", "overrides", "privacy", "tracking"]
