"""Reprogramming Distillation (RD) of medical foundation models into small students.

Subpackages: ``networks`` (reprogrammer, shared classifier, students, deployable student),
``losses`` (CKA, KD, hint, RD), ``foundation`` (frozen teachers), ``engines`` (RDTrainer and
evaluators), ``handlers`` (MLflow registry, feature cache, plots), ``data`` (embedded real
datasets, datalists, transform presets). Importing the package imports all of them, so bundle
configs can write ``$import rd_components`` and then ``rd_components.data.X``.
"""

from . import data, engines, foundation, handlers, losses, networks, tracking, utils

__version__ = "0.1.0"

# a user mistake (bad data path or datalist, unknown teacher, bad input files) ends a bundle run
# with one line instead of MONAI's config-evaluation traceback
utils.install_one_line_errors()

__all__ = ["data", "engines", "foundation", "handlers", "losses", "networks", "tracking", "utils"]
