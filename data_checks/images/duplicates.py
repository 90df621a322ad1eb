"""Exact copies, near-copies and views of one part, found from pixels alone.

Two questions with two thresholds:
- *Near-copy*: the same photo saved twice (maybe re-encoded or resized). Two labels on one photo
  cannot both be right: an `error` that quarantines the minority label (or all, on a tie).
- *Same part*: one tile shot under several lamps. Their thumbnails correlate strongly although
  the grey levels differ. These groups go to the splitter, so views of one part never straddle
  train and test; differing labels inside one are reported as a `warn` for review, since a
  defect can be visible under one lamp and not another.

Both thresholds scale with the data set unless set: a fixed one tuned on tiles read every ball-screw
image as a copy of another (the spindle's grooves look the same at thumbnail size everywhere; the
median distance between two of its images is 0.02, the tiles' 0.62), so 53 of 505 images were
label conflicts and every image one part.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from core.errors import DataError
from data_checks.findings import Finding, Severity
from data_checks.images.config import DuplicateConfig  # the stage and its settings

# The fixed thresholds, and the share of the data set's median distance between two of its images
# that each may reach at most: on the magnetic tiles (median 0.62) the shares give the fixed values.
VIEW_DISTANCE, COPY_DISTANCE = 0.02, 0.002
VIEW_SHARE, COPY_SHARE = 1 / 30, 1 / 300


@dataclass
class DuplicateReport:
    """`part_group` per input row (-1 for undecodable rows); copy components; findings; the thresholds used."""

    part_group: np.ndarray
    copy_components: list[list[int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)


def thresholds(cfg: DuplicateConfig, condensed: np.ndarray) -> dict[str, float]:
    """(view, copy) distance thresholds: as set, else the fixed ones capped at their share of the median
    distance between two images of this data set (`condensed`: every pair once, as scipy keeps it)."""
    median = float(np.median(condensed))
    view = cfg.view_distance if cfg.view_distance is not None else min(VIEW_DISTANCE, VIEW_SHARE * median)
    copy = cfg.copy_distance if cfg.copy_distance is not None else min(COPY_DISTANCE, COPY_SHARE * median)
    return {"view_distance": view, "copy_distance": copy, "median_distance": median}


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _label_conflicts(members: list[int], labels: np.ndarray, paths: np.ndarray) -> list[tuple[int, str]]:
    """(row, message) for items outvoted by the majority label of their component; all on a tie."""
    counts = Counter(labels[members]).most_common()
    tie = len(counts) > 1 and counts[0][1] == counts[1][1]
    majority = None if tie else counts[0][0]
    out = []
    for i in members:
        if labels[i] == majority:
            continue
        others = [f"{paths[j]} ({labels[j]})" for j in members if j != i and labels[j] != labels[i]][:3]
        out.append(
            (i, f"labelled {labels[i]!r} but a copy of it is labelled differently: {', '.join(others)}")
        )
    return out


def find_duplicates(table: pd.DataFrame, cfg: DuplicateConfig) -> DuplicateReport:
    """`table` needs columns path, label, decodable, md5, brightness, view (see image_properties)."""
    n = len(table)
    if n > cfg.max_images:
        raise DataError(
            f"{n} images exceed duplicates.max_images={cfg.max_images}; check the data set in parts"
        )
    ok = np.flatnonzero(table["decodable"].to_numpy(dtype=bool))
    paths, labels = table["path"].to_numpy(), table["label"].to_numpy()
    part_group = np.full(n, -1)
    report = DuplicateReport(part_group)
    if len(ok) < 2:
        part_group[ok] = 0
        return report

    views = np.stack(table["view"].to_numpy()[ok]).astype(np.float32)  # (M, 144), unit norm
    distance = np.clip(1.0 - views @ views.T, 0.0, 2.0)  # (M, M)
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False)  # every pair once
    report.thresholds = used = thresholds(cfg, condensed)
    tree = linkage(condensed, method="average")
    part_group[ok] = fcluster(tree, used["view_distance"], criterion="distance")

    md5 = table["md5"].to_numpy()[ok]
    brightness = table["brightness"].to_numpy(dtype=float)[ok]
    same_bytes = md5[:, None] == md5[None, :]
    near = (distance <= used["copy_distance"]) & (
        np.abs(brightness[:, None] - brightness[None, :]) <= cfg.copy_brightness
    )
    a, b = np.nonzero(np.triu(same_bytes | near, k=1))
    component = _components(len(ok), np.stack([a, b], 1)) if len(a) else np.arange(len(ok))
    for c in np.unique(component[a]) if len(a) else []:
        members = ok[component == c].tolist()
        report.copy_components.append(members)
        for row, message in _label_conflicts(members, labels, paths):
            report.findings.append(
                Finding("duplicate_label_conflict", Severity.ERROR, message, str(paths[row]))
            )

    for g in np.unique(part_group[ok]):
        members = np.flatnonzero(part_group == g)
        kinds = Counter(labels[members])
        if len(kinds) > 1:
            summary = ", ".join(f"{k} x{v}" for k, v in kinds.most_common())
            majority = kinds.most_common(1)[0][0]
            for i in members[labels[members] != majority]:
                report.findings.append(
                    Finding(
                        "part_label_conflict",
                        Severity.WARN,
                        f"looks like the same part as {len(members) - 1} other image(s) labelled {summary}; review its label",
                        str(paths[i]),
                    )
                )
    return report


def copy_groups(report: DuplicateReport) -> np.ndarray:
    """A group per copy component (the same photo saved twice), every other row its own group."""
    groups = np.arange(len(report.part_group)) + len(report.copy_components)
    for number, members in enumerate(report.copy_components):
        groups[members] = number
    return groups


def declared_groups_that_look_alike(declared: np.ndarray, report: DuplicateReport) -> Finding | None:
    """A `warn` when pixels put images of different declared groups into one part: the declared groups
    are kept (the user named the parts; on a line whose images all look alike, the looks mislead), but
    if they do show one part, they should share a group."""
    spans = [
        sorted(set(declared[report.part_group == g]))
        for g in np.unique(report.part_group[report.part_group >= 0])
    ]
    spans = [groups for groups in spans if len(groups) > 1]
    if not spans:
        return None
    shown = "; ".join(" + ".join(map(str, groups[:4])) for groups in spans[:3])
    return Finding("groups_look_alike", Severity.WARN,
                   f"{len(spans)} set(s) of declared groups hold images that look like one part ({shown}); the declared "
                   "groups are kept: if they show one part, give them one group in the CSV")  # fmt: skip


def merge_groups(*groupings: np.ndarray) -> np.ndarray:
    """Union of several groupings (connected components): rows that share any group share the result."""
    n = len(groupings[0])
    offset, a, b = n, [], []
    for grouping in groupings:
        codes = pd.factorize(pd.Series(grouping).astype(str))[0]
        a.append(np.arange(n))
        b.append(codes + offset)
        offset += codes.max() + 1
    pairs = np.stack([np.concatenate(a), np.concatenate(b)], 1)
    return _components(offset, pairs)[:n]
