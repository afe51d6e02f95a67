"""MODEL_CARD.md of a version, rendered from its card.json (so the prose never disagrees with the figures).

Training writes it; ``bench_model --record`` adds the speed figures to card.json and ``check_model --record`` the
serving check, and each renders it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_CARD_FILE = "MODEL_CARD.md"


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    lines = ["| type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for slug, row in metrics.get("per_type", {}).items():
        lines.append(
            f"| {slug} | {_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | {row['support']} |"
        )
    return lines


def _summary_row(name: str, m: dict[str, Any]) -> str:
    recalls = [row["recall"] for row in m.get("per_type", {}).values()]
    return (
        f"| {name} | {_f(m.get('accuracy'))} | {_f(m.get('macro_f1'))} | {_f(min(recalls) if recalls else None)} "
        f"| {_f(m.get('ece'))} | {_f(m.get('precision_at_5'))} |"
    )


def render(card: dict[str, Any]) -> str:
    lines = [
        *_header(card),
        *_scores(card),
        *_check(card.get("serving")),
        *_calibration(card),
        *_how_it_was_made(card),
        *_speed(card.get("benchmark")),
        *_notes(card.get("notes")),
    ]
    return "\n".join(lines) + "\n"


def _serving(card: dict[str, Any]) -> dict[str, Any] | None:
    """The serving copy's block when it was made and measured."""
    serving = card.get("serving")
    return serving if isinstance(serving, dict) and "metrics" in serving else None


def _header(card: dict[str, Any]) -> list[str]:
    return [
        f"# Model card: {card.get('version', '?')}",
        "",
        f"Artwork type classifier ({', '.join(card.get('classes', []))}) and 128-d similarity embedding for Artsite. "
        f"Architecture `{card.get('architecture')}`, input {card.get('input_size')}x{card.get('input_size')} px. "
        "Generated from `card.json` by `inference/model_card.py`; the figures below are the card's.",
        "",
        "## Intended use",
        "",
        "Suggest a type for each uploaded photograph of an artwork (curators confirm or correct it) and find the five "
        "most similar works by cosine distance between embeddings. Not meant for other kinds of images: a photograph "
        "that is not of one of its types still gets one of them, usually with low confidence; it never predicts a type "
        "missing from its class list.",
    ]


def _scores(card: dict[str, Any]) -> list[str]:
    """The summary table (model.keras and the serving copy), per-type tables, agreement and confusion matrix."""
    metrics, serving = card.get("metrics", {}), _serving(card)
    val = card.get("data", {}).get("val") or {}
    lines = [
        "",
        "## Scores",
        "",
        f"Measured on `{metrics.get('evaluated_on', '?')}` ({metrics.get('n')} images"
        + (f", `{val.get('dir')}`, fingerprint `{str(val.get('fingerprint', ''))[:12]}`" if val else "")
        + "), never used to choose anything during training. precision@5: share of the five nearest "
        f"catalogue images (cosine, {metrics.get('precision_at_5_catalogue', 'n/a')}) that have the query's type. "
        "ECE: expected calibration error of the top class, 15 bins, after temperature scaling.",
        "",
        "| model file | accuracy | macro-F1 | lowest recall | ECE | precision@5 |",
        "|---|---:|---:|---:|---:|---:|",
        _summary_row("model.keras (float32)", metrics),
    ]
    if serving:
        lines.append(
            _summary_row(f"{serving['file']} ({serving['quantization']}, what serves)", serving["metrics"])
        )
    lines += ["", "Per type (model.keras):", "", *_metrics_table(metrics)]
    if serving:
        agreement = serving.get("agreement_with_keras", {})
        lines += [
            "",
            f"Per type ({serving['file']}, {serving['quantization']}):",
            "",
            *_metrics_table(serving["metrics"]),
            "",
            f"The {serving['quantization']} copy agrees with model.keras on {_f(agreement.get('top1_agreement'))} of "
            f"the evaluation images' top type; largest probability difference "
            f"{_f(agreement.get('max_probability_diff'))}, smallest embedding cosine "
            f"{_f(agreement.get('min_embedding_cosine'), 4)}. {_sentence(serving.get('quantization_detail', ''))}",
        ]
    return lines + _confusion(metrics.get("confusion"), card.get("classes", []))


def _check(serving: dict[str, Any] | None) -> list[str]:
    """The serving check activation requires (training records it; ``manage.py check_model --record`` again)."""
    check = serving.get("check") if isinstance(serving, dict) else None
    if not isinstance(check, dict):
        return []
    return [
        "",
        "## Serving check",
        "",
        f"Serving check ({check.get('by')}, {check.get('checked')}, {check.get('runtime')}): on the verification "
        f"images the copy's largest probability difference from model.keras is "
        f"{_f(check.get('max_probability_diff'), 4)} (limit {check.get('max_probability_diff_limit')}), its "
        f"smallest embedding cosine {_f(check.get('min_embedding_cosine'), 4)} (limit "
        f"{check.get('min_embedding_cosine_limit')}), top-1 agreement {_f(check.get('top1_agreement'))}: "
        f"**{'passed' if check.get('passed') else 'FAILED'}** (file sha256 `{str(check.get('file_sha256'))[:12]}`).",
    ]


def _confusion(confusion: list[list[int]] | None, classes: list[str]) -> list[str]:
    if not confusion:
        return []
    return [
        "",
        "Confusion matrix (model.keras; rows true, columns predicted; also `confusion.png`):",
        "",
        "| | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 1) + "|",
        *(
            f"| **{slug}** | " + " | ".join(str(v) for v in row) + " |"
            for slug, row in zip(classes, confusion, strict=False)
        ),
    ]


def _calibration(card: dict[str, Any]) -> list[str]:
    metrics, calibration = card.get("metrics", {}), card.get("calibration", {})
    return [
        "",
        "## Calibration",
        "",
        f"Temperature T = {card.get('temperature')} ({calibration.get('method', '')}; "
        f"{calibration.get('n')} images). The loader serves softmax(logits / T). ECE on "
        f"`{metrics.get('evaluated_on', '?')}`: {_f(metrics.get('ece_uncalibrated'))} before, "
        f"{_f(metrics.get('ece'))} after.",
    ]


# Recipe entries of the card's hyperparameters, listed when present, in this order.
RECIPE_LINES = (
    ("fine_tune_from", "First trained block"),
    ("frozen", "Frozen"),
    ("trunk_activations", "Trunk activations trained on"),
    ("head", "Head"),
    ("augmentation", "Augmentation"),
    ("loss", "Loss"),
    ("optimizer", "Optimizer"),
    ("schedule", "Schedule"),
)


def _how_it_was_made(card: dict[str, Any]) -> list[str]:
    hp, data, environment = card.get("hyperparameters", {}), card.get("data", {}), card.get("environment", {})
    counts = ", ".join(f"{k} {v}" for k, v in data.get("counts", {}).items())
    lines = [
        "",
        "## How it was made",
        "",
        f"- Data: `{data.get('dir')}`, {data.get('n')} images ({counts}), "
        f"fingerprint `{str(data.get('fingerprint', ''))[:12]}`; {data.get('fit_n')} trained on, "
        f"{(data.get('holdout') or {}).get('n')} held out (stratified, seed {hp.get('seed')}) to pick the epoch and "
        "fit the temperature.",
        f"- Preprocessing (shared by training and serving): {card.get('preprocessing')} Normalisation: "
        f"{card.get('normalisation', 'inside the model')}.",
        *(f"- {label}: {hp[key]}." for key, label in RECIPE_LINES if hp.get(key)),
        f"- {hp.get('epochs')} epochs, batch {hp.get('batch_size')}, peak learning rate {hp.get('learning_rate')}, "
        f"class weights {hp.get('class_weights')}; best epoch {hp.get('best_epoch')} ({hp.get('selection')}); "
        + (f"{hp['trainable_parameters']:,} trainable parameters; " if hp.get("trainable_parameters") else "")
        + f"seed {hp.get('seed')}.",
        f"- Training time: {card.get('training_seconds')} s wall, {card.get('training_cpu_seconds', 'n/a')} s CPU on "
        f"{environment.get('cpus')} CPU cores (load average "
        f"{environment.get('load_average', 'n/a')} when it finished: the machine was shared).",
        f"- Software: TensorFlow {environment.get('tensorflow')}, Keras "
        f"{environment.get('keras')}, Python {environment.get('python')}.",
    ]
    if card.get("reproduce"):
        lines += ["", "Reproduce:", "", "```", card["reproduce"], "```"]
    return lines


def _speed(benchmark: dict[str, Any] | None) -> list[str]:
    """The figures ``bench_model --record`` stored on the card."""
    if not benchmark:
        return []
    single, batch = benchmark["single"], benchmark["batch"]
    s, r, k = single["serving"], single["model_predict"], single.get("keras_tf_function")
    return [
        "",
        "## Speed",
        "",
        f"`make bench-model` ({benchmark.get('measured', '')}; {benchmark.get('cpus')} CPUs, load average "
        f"{benchmark['load_average']['before'][0]} before / {benchmark['load_average']['after'][0]} after: the "
        "machine was shared, so CPU time is the steadier figure). Serving path: "
        f"`{benchmark['backend']}`.",
        "",
        "| measure | serving path | model.keras tf.function | model.predict |",
        "|---|---:|---:|---:|",
        f"| one image, p50 wall (ms) | {_f(s['p50_ms'], 2)} | {_f(k['p50_ms'] if k else None, 2)} | "
        f"{_f(r['p50_ms'], 2)} |",
        f"| one image, p95 wall (ms) | {_f(s['p95_ms'], 2)} | {_f(k['p95_ms'] if k else None, 2)} | "
        f"{_f(r['p95_ms'], 2)} |",
        f"| one image, p50 CPU (ms) | {_f(s.get('cpu_p50_ms'), 2)} | "
        f"{_f(k.get('cpu_p50_ms') if k else None, 2)} | {_f(r.get('cpu_p50_ms'), 2)} |",
        f"| batch of {batch['batch_size']}, images/s | {_f(batch['serving_images_per_s'], 0)} | "
        f"{_f(batch.get('keras_tf_function_images_per_s'), 0)} | {_f(batch['model_predict_images_per_s'], 0)} |",
        f"| batch, CPU ms per image | {_f(batch.get('serving_cpu_ms_per_image'), 2)} | "
        f"{_f(batch.get('keras_tf_function_cpu_ms_per_image'), 2)} | "
        f"{_f(batch.get('model_predict_cpu_ms_per_image'), 2)} |",
        "",
        f"One image through the serving path is {single['speedup_p50']:.1f}x faster (p50) than model.predict "
        "in the same run (the serving figure includes resizing the decoded image).",
    ]


def _notes(notes: list[str] | None) -> list[str]:
    return ["", "## Notes", "", *[f"- {n}" for n in notes]] if notes else []


def write(folder: Path | str, card: dict[str, Any]) -> Path:
    path = Path(folder) / MODEL_CARD_FILE
    path.write_text(render(card), encoding="utf-8")
    return path


def _sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, final full stop; empty stays empty."""
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}{'' if text.endswith('.') else '.'}" if text else ""
