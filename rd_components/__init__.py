"""Reprogramming Distillation (RD) of medical foundation models into small students.

Subpackages: ``networks`` (reprogrammer, shared classifier, students, deployable student),
``losses`` (CKA, KD, hint, RD), ``foundation`` (frozen teachers), ``engines`` (RDTrainer and
evaluators), ``handlers`` (MLflow registry, feature cache, plots), ``data`` (embedded real
datasets, datalists, transform presets).
"""

__version__ = "0.1.0"
