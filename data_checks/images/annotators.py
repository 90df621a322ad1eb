"""Agreement between annotators (or shifts) when a manifest has an `annotator` column.

Long format: one row per (path, annotator, label). Reports Cohen's kappa for every annotator
pair, Fleiss' kappa overall and per class, and the items they disagree on; then collapses to one
label per image by majority. A tie has no majority: that item is an `error` (quarantined until
someone decides), a plain disagreement a `warn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from data_checks.findings import Finding, Severity


@dataclass
class AgreementReport:
    pairwise: pd.DataFrame  # annotator_a, annotator_b, items, cohen_kappa
    fleiss_overall: float
    fleiss_per_class: dict[str, float]
    disagreements: pd.DataFrame  # path, labels (annotator=label; ...), majority
    findings: list[Finding] = field(default_factory=list)


def fleiss_kappa(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """Fleiss' kappa from an (items, classes) matrix of rating counts, same raters per item.

    Returns the overall kappa and the per-class kappa (Fleiss 1971, eq. 13).
    """
    n_items, _ = counts.shape
    raters = counts.sum(1)[0]
    p_class = counts.sum(0) / (n_items * raters)
    p_item = ((counts**2).sum(1) - raters) / (raters * (raters - 1))
    p_bar, p_exp = p_item.mean(), (p_class**2).sum()
    overall = (p_bar - p_exp) / (1 - p_exp) if p_exp < 1 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = 1 - (counts * (raters - counts)).sum(0) / (
            n_items * raters * (raters - 1) * p_class * (1 - p_class)
        )
    return float(overall), per_class


def annotator_agreement(rows: pd.DataFrame) -> tuple[AgreementReport, pd.DataFrame]:
    """Agreement report and the manifest collapsed to one row (the majority label) per path."""
    classes = sorted(rows["label"].unique())
    wide = rows.pivot_table(index="path", columns="annotator", values="label", aggfunc="first")
    pairs = []
    for a, b in combinations(wide.columns, 2):
        both = wide[[a, b]].dropna()
        kappa = cohen_kappa_score(both[a], both[b], labels=classes) if len(both) > 1 else float("nan")
        pairs.append({"annotator_a": a, "annotator_b": b, "items": len(both), "cohen_kappa": float(kappa)})

    counts = pd.crosstab(rows["path"], rows["label"]).reindex(columns=classes, fill_value=0)
    raters = counts.sum(1)
    modal = raters.mode().iloc[0]
    overall, per_class = (
        fleiss_kappa(counts[raters == modal].to_numpy())
        if modal > 1
        else (float("nan"), np.full(len(classes), np.nan))
    )

    findings, disagreements, majority = [], [], {}
    for path, row in counts.iterrows():
        ranked = row.sort_values(ascending=False)
        majority[path] = ranked.index[0]
        if (row > 0).sum() < 2:
            continue
        given = "; ".join(f"{a}={lab}" for a, lab in wide.loc[path].dropna().items())
        tie = ranked.iloc[0] == ranked.iloc[1]
        disagreements.append({"path": path, "labels": given, "majority": None if tie else ranked.index[0]})
        if tie:
            findings.append(
                Finding(
                    "annotator_tie", Severity.ERROR, f"annotators disagree with no majority ({given})", path
                )
            )
        else:
            findings.append(
                Finding(
                    "annotator_disagreement",
                    Severity.WARN,
                    f"annotators disagree ({given}); majority {ranked.index[0]!r} used",
                    path,
                )
            )

    collapsed = rows.drop_duplicates("path").drop(columns=["annotator"]).copy()
    collapsed["label"] = collapsed["path"].map(majority)
    report = AgreementReport(
        pd.DataFrame(pairs),
        overall,
        dict(zip(classes, map(float, per_class), strict=True)),
        pd.DataFrame(disagreements, columns=["path", "labels", "majority"]),
        findings,
    )
    return report, collapsed.reset_index(drop=True)
