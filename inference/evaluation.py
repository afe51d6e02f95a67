"""Model quality: accuracy, macro-F1, per-type precision/recall/F1, confusion matrix, calibration (ECE, 15 bins),
similarity quality (precision@5), temperature fitting, and the card's figures drawn with Pillow.

Everything here is NumPy on predictions; :func:`evaluate_classifier` is the one place that runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.table import Table

if TYPE_CHECKING:
    from inference.datasets import ImageSet
    from inference.loader import Classifier

ECE_BINS = 15
SIMILAR_K = 5


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def per_type_metrics(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class (0.0 where undefined, e.g. a class never predicted)."""
    result: dict[str, dict[str, float]] = {}
    for i, slug in enumerate(classes):
        tp = float(matrix[i, i])
        predicted = float(matrix[:, i].sum())
        support = float(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[slug] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support)}
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: confidence vs accuracy in ``bins`` equal-width confidence bins, weighted by bin size."""
    if len(labels) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def precision_at_k(
    query_embeddings: np.ndarray,
    query_labels: np.ndarray,
    catalogue_embeddings: np.ndarray | None = None,
    catalogue_labels: np.ndarray | None = None,
    *,
    k: int = SIMILAR_K,
    chunk: int = 1024,
) -> float:
    """Mean over queries of the share of its ``k`` nearest catalogue items (cosine) that share its type.

    Without a catalogue the queries are their own catalogue and each query's own row is left out.
    """
    leave_one_out = catalogue_embeddings is None
    if catalogue_embeddings is None or catalogue_labels is None:
        catalogue_embeddings, catalogue_labels = query_embeddings, query_labels
    if len(query_labels) == 0:
        return 0.0
    k = min(k, len(catalogue_labels) - (1 if leave_one_out else 0))
    if k <= 0:
        return 0.0
    queries = _normalise(query_embeddings)
    catalogue = _normalise(catalogue_embeddings)
    hits = 0.0
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ catalogue.T
        if leave_one_out:
            rows = np.arange(similarity.shape[0])
            similarity[rows, rows + start] = -np.inf
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        hits += float((catalogue_labels[nearest] == query_labels[start : start + chunk, None]).sum())
    return hits / (len(queries) * k)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` computed from probabilities (log p = logits + constant per row)."""
    return softmax(np.log(np.maximum(probabilities.astype(np.float64), 1e-30)) / temperature)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` in [0.05, 20] that minimises the negative log-likelihood of held-out predictions
    (Guo et al. 2017): a log-spaced grid, then a finer grid around its best point. Argmax is unchanged by T."""
    if len(labels) == 0:
        return 1.0

    def nll(t: float) -> float:
        return negative_log_likelihood(apply_temperature(probabilities, t), labels)

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = best * np.exp(np.linspace(-0.05, 0.05, 41))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def classification_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    embeddings: np.ndarray | None = None,
    catalogue_embeddings: np.ndarray | None = None,
    catalogue_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """The card's ``metrics`` block: accuracy, macro_f1, ece, precision_at_5, per_type, n, confusion."""
    labels = np.asarray(labels, np.int64)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(classes))
    per_type = per_type_metrics(matrix, classes)
    present = [slug for slug in classes if per_type[slug]["support"] > 0]
    metrics: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean([per_type[s]["f1"] for s in present])) if present else 0.0,
        "ece": expected_calibration_error(probabilities, labels),
        "nll": negative_log_likelihood(probabilities, labels) if len(labels) else 0.0,
        "precision_at_5": None,
        "per_type": per_type,
        "confusion": matrix.tolist(),
    }
    if embeddings is not None:
        metrics["precision_at_5"] = precision_at_k(embeddings, labels, catalogue_embeddings, catalogue_labels)
        metrics["precision_at_5_catalogue"] = (
            "leave-one-out within the evaluated set"
            if catalogue_embeddings is None
            else f"{len(catalogue_labels) if catalogue_labels is not None else 0} catalogue images"
        )
    return metrics


def predict_dataset(
    classifier: Classifier,
    dataset: ImageSet,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, embeddings, labels in the classifier's class order) for every image of ``dataset``."""
    if dataset.input_size != classifier.input_size:
        raise ValueError(
            f"The images were read at {dataset.input_size} px; the model takes {classifier.input_size}."
        )
    missing = [slug for slug in dataset.classes if slug not in classifier.classes]
    if missing:
        raise ValueError(f"The model {classifier.version} does not know the type(s) {', '.join(missing)}.")
    remap = np.array([classifier.classes.index(slug) for slug in dataset.classes], np.int64)
    probabilities, embeddings = [], []
    for start in range(0, len(dataset), batch_size):
        p, e = classifier.predict_arrays(dataset.images[start : start + batch_size])
        probabilities.append(p)
        embeddings.append(e)
        if progress is not None:
            progress(min(start + batch_size, len(dataset)), len(dataset))
    return np.concatenate(probabilities), np.concatenate(embeddings), remap[dataset.labels]


def evaluate_classifier(
    classifier: Classifier,
    dataset: ImageSet,
    *,
    catalogue: ImageSet | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of a served model version on a labelled set. precision@5 searches ``catalogue`` (e.g. the training
    images, as the live catalogue would hold them), or the set itself, leave-one-out, when none is given."""
    total = len(dataset) + (len(catalogue) if catalogue is not None else 0)

    def sub_progress(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, _n: progress(offset + done, total))

    probabilities, embeddings, labels = predict_dataset(classifier, dataset, progress=sub_progress(0))
    catalogue_embeddings = catalogue_labels = None
    if catalogue is not None:
        _, catalogue_embeddings, catalogue_labels = predict_dataset(
            classifier, catalogue, progress=sub_progress(len(dataset))
        )
    metrics = classification_metrics(
        probabilities,
        labels,
        classifier.classes,
        embeddings=embeddings,
        catalogue_embeddings=catalogue_embeddings,
        catalogue_labels=catalogue_labels,
    )
    metrics["version"] = classifier.version
    metrics["data"] = dataset.summary()
    if catalogue is not None:
        metrics["catalogue"] = catalogue.summary()
    return metrics


# --- Figures (Pillow only: matplotlib is not a dependency) ------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_confusion_png(
    matrix: np.ndarray | list[list[int]],
    classes: Sequence[str],
    path: Path | str,
    *,
    title: str = "Confusion matrix",
) -> Path:
    """Rows true type, columns predicted; cells shaded by the share of their row, with counts."""
    matrix = np.asarray(matrix, np.int64)
    n = len(classes)
    cell, left, top = 78, 120, 90
    width, height = left + n * cell + 20, top + n * cell + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(12)
    draw.text((10, 8), title, fill="black", font=_font(16))
    draw.text((left + n * cell // 2 - 30, 34), "predicted", fill="black", font=small)
    draw.text((10, top - 18), "true", fill="black", font=small)
    row_sums = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shares = matrix / row_sums
    for j, slug in enumerate(classes):
        draw.text((left + j * cell + 4, top - 34 + (j % 2) * 14), slug[:11], fill="black", font=small)
    for i, slug in enumerate(classes):
        draw.text((10, top + i * cell + cell // 2 - 7), slug[:14], fill="black", font=font)
        for j in range(n):
            share = float(shares[i, j])
            shade = int(255 - 200 * share)
            colour = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle((x0, y0, x0 + cell - 2, y0 + cell - 2), fill=colour, outline=(200, 200, 200))
            text = f"{matrix[i, j]}\n{share:.0%}"
            draw.multiline_text((x0 + 8, y0 + cell // 2 - 16), text, fill="black", font=font, spacing=2)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    draw.text(
        (left, top + n * cell + 10),
        f"accuracy {accuracy:.1%}  n={int(matrix.sum())}",
        fill="black",
        font=font,
    )
    path = Path(path)
    image.save(path)
    return path


def render_curves_png(
    history: Mapping[str, Sequence[float]], path: Path | str, *, title: str = "Training"
) -> Path:
    """Two panels, loss and accuracy per epoch, one line per series (``loss``/``val_loss``, ``accuracy``/...)."""
    panels = [
        ("loss", [k for k in history if k.endswith("loss")]),
        ("accuracy", [k for k in history if k.endswith("accuracy")]),
    ]
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    panel_w, panel_h, margin = 420, 300, 50
    image = Image.new("RGB", (2 * panel_w + 3 * margin, panel_h + 2 * margin + 30), "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    draw.text((margin, 8), title, fill="black", font=_font(16))
    for p, (name, keys) in enumerate(panels):
        x0, y0 = margin + p * (panel_w + margin), margin
        draw.rectangle((x0, y0, x0 + panel_w, y0 + panel_h), outline="black")
        draw.text((x0, y0 - 16), name, fill="black", font=font)
        series = [np.asarray(history[k], np.float64) for k in keys if len(history[k])]
        if not series:
            continue
        values = np.concatenate(series)
        low, high = (0.0, 1.0) if name == "accuracy" else (0.0, float(np.nanmax(values)) * 1.05 or 1.0)
        epochs = max(len(s) for s in series)
        for tick in np.linspace(low, high, 5):
            y = y0 + panel_h - (tick - low) / (high - low) * panel_h
            draw.line((x0, y, x0 + panel_w, y), fill=(230, 230, 230))
            draw.text((x0 - 40, y - 7), f"{tick:.2f}", fill="black", font=font)
        draw.text((x0 + panel_w - 60, y0 + panel_h + 6), f"{epochs} epochs", fill="black", font=font)
        for s, (key, values_k) in enumerate(zip(keys, series, strict=False)):
            colour = colours[s % len(colours)]
            points = [
                (
                    x0 + (e / max(epochs - 1, 1)) * panel_w,
                    y0 + panel_h - (float(v) - low) / (high - low) * panel_h,
                )
                for e, v in enumerate(values_k)
            ]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
            draw.text((x0 + 8, y0 + 6 + 14 * s), key, fill=colour, font=font)
    path = Path(path)
    image.save(path)
    return path


def per_type_table(title: str, per_type: Mapping[str, Mapping[str, float]]) -> Any:
    """The per-type precision / recall / F1 / support table that ``train_model`` and ``evaluate_model`` print
    (a rich ``Table``)."""

    table = Table(title=title)
    for column in ("type", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for slug, row in per_type.items():
        table.add_row(
            slug,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(int(row["support"])),
        )
    return table
