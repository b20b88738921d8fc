"""Committees (ensembles) of NNPs of any family: splits, training, best member, UQ,
persistence and the ASE calculator, one module each."""

from rarelearn.committee.calculator import CommitteeCalculator
from rarelearn.committee.committee import COMMITTEE_FILE, SPLITS_FILE, Committee, MapExecutor
from rarelearn.committee.splits import STRATEGIES, frame_ids, make_splits, parent_groups
from rarelearn.committee.training import MemberTask, train_member
from rarelearn.potentials.results import BatchEvalResult, CommitteePrediction, EvalResult

__all__ = [
    "COMMITTEE_FILE",
    "SPLITS_FILE",
    "STRATEGIES",
    "BatchEvalResult",
    "Committee",
    "CommitteeCalculator",
    "CommitteePrediction",
    "EvalResult",
    "MapExecutor",
    "MemberTask",
    "frame_ids",
    "make_splits",
    "parent_groups",
    "train_member",
]
