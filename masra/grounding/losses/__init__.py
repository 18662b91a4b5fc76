"""Losses of the grounding model: the set criterion and the MASRA prior-alignment losses."""

from masra.grounding.losses.criterion import SetCriterion, build_criterion, weighted_total

__all__ = ["SetCriterion", "build_criterion", "weighted_total"]
