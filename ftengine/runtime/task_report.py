"""Plain-text reports of the multilabel and regression tasks (classification's is `report.format_report`), and
the per-class / per-label precision-recall-F1 table both kinds of report print."""

from __future__ import annotations

from typing import Any


def format_multilabel(metrics: dict[str, Any], title: str) -> str:
    """Overall numbers at the chosen threshold, then a per-label precision/recall/F1 table."""
    labels = metrics["labels"]
    lines = [f"{title}: {metrics['num_examples']:,} examples, {len(labels)} labels, threshold {metrics['threshold']:.2f}",
             f"micro F1         {metrics['micro_f1']:.4f}", f"macro F1         {metrics['macro_f1']:.4f}",
             f"micro precision  {metrics['micro_precision']:.4f}", f"micro recall     {metrics['micro_recall']:.4f}",
             f"subset accuracy  {metrics['subset_accuracy']:.4f}"]
    if "loss" in metrics:
        lines.append(f"loss             {metrics['loss']:.4f}")
    lines += ["", *per_name_table("label", labels, metrics["per_label"])]
    return "\n".join(lines) + "\n"


def name_width(names: list[str]) -> int:
    """Width of the name column of a report table: the longest name, at least 12."""
    return max(12, *(len(name) for name in names))


def per_name_table(column: str, names: list[str], per_name: dict[str, dict[str, Any]]) -> list[str]:
    """A precision / recall / F1 / support table, one row per class or label (header first), as report lines."""
    width = name_width(names)
    lines = [f"{column:<{width}}  precision  recall     f1  support"]
    for name in names:
        c = per_name[name]
        lines.append(f"{name:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:.4f}  {c['support']:7,}")
    return lines


def format_regression(metrics: dict[str, Any], title: str) -> str:
    """RMSE, MAE, Pearson and Spearman of the predicted target."""
    lines = [f"{title}: {metrics['num_examples']:,} examples, target '{metrics['target']}'",
             f"RMSE      {metrics['rmse']:.4f}", f"MAE       {metrics['mae']:.4f}",
             f"Pearson   {metrics['pearson']:.4f}", f"Spearman  {metrics['spearman']:.4f}"]
    if "loss" in metrics:
        lines.append(f"loss      {metrics['loss']:.4f}  (on targets normalised by the training mean and std)")
    return "\n".join(lines) + "\n"


TASK_FORMATS = {"multilabel": format_multilabel, "regression": format_regression}
"""Report formatters by the report's `task` (absent: classification)."""
