"""Losses of Reprogramming Distillation: CKA, Hinton KD, FitNet hints and the RD objective."""

from rd_components.losses.cka import CKALoss, cka
from rd_components.losses.distillation import HintLoss, KDLoss
from rd_components.losses.drd_loss import DRDLoss, grid_samples
from rd_components.losses.rd_loss import RDLoss

__all__ = ["cka", "CKALoss", "KDLoss", "HintLoss", "RDLoss", "DRDLoss", "grid_samples"]
