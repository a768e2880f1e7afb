"""Planner: compile (spec, backbone structure) into an execution graph of names and numbers."""

from ftengine.planner.checks import CHECKS, NOTES, check, note, run_checks
from ftengine.planner.graph import CachePlan, CachePoint, ExecutionGraph, GroupInfo, GroupPlan, StagePlan
from ftengine.planner.plan import plan
from ftengine.planner.selectors import Selection, compress_list, compress_ranges, select

__all__ = [
    "CHECKS", "CachePlan", "CachePoint", "ExecutionGraph", "GroupInfo", "GroupPlan", "NOTES", "Selection", "StagePlan",
    "check", "compress_list", "compress_ranges", "note", "plan", "run_checks", "select",
]
