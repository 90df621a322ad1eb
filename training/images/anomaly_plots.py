"""What a reviewer of an image anomaly model looks at in the MLflow UI: where the scores of good and
defect test parts fall against the threshold, and anomaly maps that show *where* the model sees a defect
(the caught defects it is surest of, the defects it missed, the good parts it would reject)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.images.anomaly import AnomalyEvaluation, AnomalyImages, anomaly_maps
from training.images.patchcore import PatchCoreScorer
from training.images.plots import _save


def score_histogram_png(
    evaluation: AnomalyEvaluation, data: AnomalyImages, threshold: float, path: Path
) -> Path:
    good = data.good[evaluation.test_rows]
    scores = evaluation.test_scores
    figure = Figure(figsize=(6.5, 3.6))
    axis = figure.subplots()
    bins = np.linspace(scores.min(), scores.max(), 31) if len(scores) else 10
    axis.hist(scores[good], bins=bins, alpha=0.6, label=f"good ({good.sum()})", color="tab:green")
    if (~good).any():
        axis.hist(scores[~good], bins=bins, alpha=0.6, label=f"defect ({(~good).sum()})", color="tab:red")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    test = evaluation.test
    said = f"false rejects {test.false_reject_rate:.1%}"
    if test.defect_recall is not None:
        said = f"defect recall {test.defect_recall:.1%}, {said}, AUROC {test.auroc:.3f}"
    axis.set_title(f"test parts: {said}", fontsize=10)
    axis.set_xlabel("anomaly score (worst patch's distance to the good-patch bank)")
    axis.set_ylabel("images")
    axis.legend(fontsize=8)
    return _save(figure, path)


def chosen_examples(evaluation: AnomalyEvaluation, good: np.ndarray, threshold: float,
                    each: int) -> list[tuple[int, str, float]]:  # fmt: skip
    """(manifest row, why shown, image score): the highest-scoring caught defects, the missed defects that scored
    lowest, and the good parts scoring highest (the false rejects, or the closest calls)."""
    rows, scores = evaluation.test_rows, evaluation.test_scores
    is_good = good[rows]
    order = np.argsort(-scores)
    caught = [i for i in order if not is_good[i] and scores[i] > threshold][:each]
    missed = [i for i in order[::-1] if not is_good[i] and scores[i] <= threshold][: max(1, each // 2)]
    good_high = [i for i in order if is_good[i]][: max(1, each // 2)]
    shown = [(caught, "caught defect"), (missed, "missed defect"), (good_high, "good part")]
    return [(int(rows[i]), why, float(scores[i])) for picked, why in shown for i in picked]


def anomaly_map_pngs(scorer: PatchCoreScorer, evaluation: AnomalyEvaluation, data: AnomalyImages,
                     threshold: float, out_dir: Path, each: int = 4) -> dict[str, Path]:  # fmt: skip
    """One PNG per chosen test image: the image, and the map over it (the white line: the threshold;
    the image score is the worst patch's, before the map's smoothing)."""
    examples = chosen_examples(evaluation, data.good, threshold, each)
    if not examples:
        return {}
    maps = anomaly_maps(scorer, data.images[[row for row, _, _ in examples]])
    low, top = float(maps.min()), max(float(maps.max()), threshold * 1.5)  # one scale for every picture
    files = {}
    for k, ((row, why, score), heat) in enumerate(zip(examples, maps, strict=True)):
        figure = Figure(figsize=(6.4, 3.4))
        left, right = figure.subplots(1, 2)
        left.imshow(data.images[row], cmap="gray", vmin=0, vmax=255)
        right.imshow(data.images[row], cmap="gray", vmin=0, vmax=255)
        shown = right.imshow(heat, cmap="jet", alpha=0.45, vmin=low, vmax=top)
        right.contour(heat, levels=[threshold], colors="white", linewidths=0.8)
        figure.colorbar(shown, ax=right, fraction=0.046)
        verdict = "REJECT" if score > threshold else "accept"
        left.set_title(f"{why}: {Path(data.paths[row]).name}", fontsize=8)
        right.set_title(f"{verdict}: score {score:.3g} (threshold {threshold:.3g})", fontsize=8)
        for axis in (left, right):
            axis.set_axis_off()
        name = f"{k:02d}_{why.replace(' ', '_')}_{Path(data.paths[row]).stem}"
        files[name] = _save(figure, out_dir / f"{name}.png")
    return files
