"""Measure match latency, search time and batch embedding throughput: ``python -m osoroi.benchmark``.

Prints one table and writes the same numbers to ``reports/metrics/benchmark.json``.
It uses the trained model and its catalogue index when both exist. Without a trained
model it uses the demo matcher, and without the index it warns and uses the trained
model. Either stand-in searches a random index of catalogue size, so the search cost
stays realistic.
Targets on 2 CPU cores: match p50 <= 60 ms at the model's resolution, search
<= 5 ms per query at 44k vectors.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osoroi import config
from osoroi.atomic import write_json
from osoroi.images import InvalidImageError, load_image
from osoroi.cli_types import integer_at_least, non_negative_int, positive_int
from osoroi.index import EmbeddingIndex, cosine_scores, import_faiss, normalize_rows
from osoroi.inference import run_model
from osoroi.matcher import single_threaded_blas

logger = logging.getLogger(__name__)

CATALOGUE_SIZE = 44_000


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50, p95 and mean of ``seconds`` in milliseconds."""
    values = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
        "runs": int(len(values)),
    }


def time_calls(function: Callable[[], Any], repeats: int, warmup: int = 2) -> list[float]:
    """Return the wall-clock seconds of ``repeats`` calls of ``function`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return durations


def upload_bytes(photo: Path | None) -> tuple[bytes, str]:
    """Return the bytes of the benchmark photo and its description (a real photo when one is found)."""
    if photo is not None:
        return photo.read_bytes(), photo.name
    folder = config.photos_dir() / "validation"
    candidates = sorted(folder.glob("*/*.jpg")) if folder.is_dir() else []
    if candidates:
        return candidates[0].read_bytes(), f"clothing-photos/validation/{candidates[0].parent.name}/{candidates[0].name}"
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (533, 400, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), "synthetic 400x533 JPEG"


def random_index(n: int, dim: int, fingerprint: dict[str, str], seed: int = 0) -> EmbeddingIndex:
    """Return an index of ``n`` random unit vectors with placeholder labels, for timing only."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    labels = {name: np.full(n, "x") for name in ("gender", "masterCategory", "articleType", "baseColour")}
    return EmbeddingIndex(
        vectors=normalize_rows(vectors),
        ids=np.arange(n, dtype=np.int64),
        labels=labels,
        image_paths=np.full(n, "images/0.jpg"),
        fingerprint=fingerprint,
    )


def load_benchmark_matcher(items: int, index_dim: int) -> tuple[Any, str]:
    """Return the matcher to time and a description: the trained one, or a stand-in over a random index.

    Without a trained model it times the demo model; with a trained model but no catalogue
    index it warns and times the trained model. The random index has ``items`` vectors of the
    model's dimension, reduced by PCA to ``index_dim`` dimensions as notebook 04 reduces the
    catalogue index (0: not reduced).
    """
    from osoroi.index import IndexNotFoundError, default_index_path
    from osoroi.matcher import Matcher, build_demo_matcher
    from osoroi.model import ModelNotFoundError, load_model

    try:
        model = load_model()
    except ModelNotFoundError as error:
        logger.warning("Using the demo model with a random index of %d vectors: %s", items, error)
        demo = build_demo_matcher()
        index = _random_stand_in(items, demo.index.dim, demo.model.fingerprint, index_dim)
        description = (
            f"demo model (pretrained backbone, heads fitted on 200 items) over {items} random vectors"
        )
        return Matcher(demo.model, index), description
    try:
        index = EmbeddingIndex.load(default_index_path())
    except IndexNotFoundError as error:
        warnings.warn(
            f"The trained model has no catalogue index, so the search is timed over {items} random vectors "
            f"instead ({error})",
            UserWarning,
            stacklevel=2,
        )
        index = _random_stand_in(items, int(model.embedding_dim), model.fingerprint, index_dim)
        return Matcher(model, index), f"trained model over {items} random vectors (no catalogue index)"
    return Matcher(model, index), "trained model and catalogue index"


def _random_stand_in(items: int, dim: int, fingerprint: dict[str, str], index_dim: int) -> EmbeddingIndex:
    index = random_index(items, dim, fingerprint)
    return index.reduce(index_dim) if index_dim else index


def benchmark_match(matcher: Any, data: bytes, repeats: int) -> dict[str, Any]:
    """Time one upload end to end and each stage: decode, preprocess, forward and search."""
    image = load_image(data)
    tensor = matcher.model.preprocessing.transform(image).unsqueeze(0)
    embedding, _ = matcher.forward(tensor)
    query = embedding[0].numpy()
    return {
        "image_size": list(image.size),
        "resolution": matcher.model.preprocessing.resolution,
        "index_items": len(matcher.index),
        "index_dim": matcher.index.dim,
        "precision": matcher.precision,
        "match": percentiles_ms(time_calls(lambda: matcher.match(data, k=4), repeats)),
        "decode": percentiles_ms(time_calls(lambda: load_image(data), repeats)),
        "preprocess": percentiles_ms(time_calls(lambda: matcher.model.preprocessing.transform(image), repeats)),
        "forward": percentiles_ms(time_calls(lambda: matcher.forward(tensor), repeats)),
        "search": percentiles_ms(time_calls(lambda: matcher.index.search(query, k=4), repeats)),
    }


def benchmark_search(n: int, dim: int, repeats: int, approximate: str, seed: int = 0) -> dict[str, Any]:
    """Time one query against ``n`` random vectors: numpy, torch, faiss flat and one approximate faiss index.

    ``approximate`` is "hnsw" (graph, slow to build) or "ivf" (inverted lists with 16 probes).
    Recall@4 of the approximate index is measured against exact search on the timed queries.
    """
    rng = np.random.default_rng(seed)
    vectors = normalize_rows(rng.standard_normal((n, dim), dtype=np.float32))
    queries = normalize_rows(rng.standard_normal((repeats + 2, dim), dtype=np.float32))
    tensor = torch.from_numpy(vectors)
    results: dict[str, Any] = {"n": n, "dim": dim, "memory_mb": vectors.nbytes / 2**20}

    def best_four(scores: np.ndarray) -> np.ndarray:
        top = np.argpartition(-scores, 3)[:4]
        return top[np.argsort(-scores[top])]

    def exact_numpy(query: np.ndarray) -> np.ndarray:
        return best_four(vectors @ query)

    def exact_einsum(query: np.ndarray) -> np.ndarray:
        return best_four(cosine_scores(vectors, query))

    def exact_torch(query: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.topk(tensor @ torch.from_numpy(query), 4).indices.numpy()

    cycle = iter(range(10**9))
    results["numpy_exact"] = percentiles_ms(time_calls(lambda: exact_numpy(queries[next(cycle) % len(queries)]), repeats))
    with single_threaded_blas():
        results["numpy_exact_one_blas_thread"] = percentiles_ms(
            time_calls(lambda: exact_numpy(queries[next(cycle) % len(queries)]), repeats)
        )
    results["numpy_einsum_exact"] = percentiles_ms(
        time_calls(lambda: exact_einsum(queries[next(cycle) % len(queries)]), repeats)
    )
    results["torch_exact"] = percentiles_ms(time_calls(lambda: exact_torch(queries[next(cycle) % len(queries)]), repeats))
    try:
        faiss = import_faiss()
    except ImportError as error:
        results["faiss"] = str(error)
        return results
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    results["faiss_flat"] = percentiles_ms(
        time_calls(lambda: flat.search(queries[next(cycle) % len(queries)][None], 4), repeats)
    )
    flat.reset()  # frees the flat copy of the vectors before the approximate index copies them again
    start = time.perf_counter()
    if approximate == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
        index.add(vectors)
        name = "faiss_hnsw"
    else:
        # sqrt(n) lists trained on 30 points per list keep the k-means step to about a minute on 2 cores.
        lists = max(1, int(np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[rng.choice(n, size=min(n, 30 * lists), replace=False)])
        index.add(vectors)
        index.nprobe = 16
        name = f"faiss_ivf{lists}_nprobe16"
    build_seconds = time.perf_counter() - start
    results[name] = percentiles_ms(time_calls(lambda: index.search(queries[next(cycle) % len(queries)][None], 4), repeats))
    results[name]["build_s"] = build_seconds
    hits = [len(set(exact_numpy(query).tolist()) & set(index.search(query[None], 4)[1][0].tolist())) for query in queries]
    results[name]["recall@4"] = float(np.mean(hits) / 4)
    return results


def benchmark_throughput(model: Any, batch_size: int, batches: int, seed: int = 0) -> dict[str, Any]:
    """Return images per second of the forward pass: a float32 one-image loop, float32 batches, bf16 + channels_last."""
    side = model.preprocessing.resolution
    images = torch.rand((batch_size, 3, side, side), generator=torch.Generator().manual_seed(seed))
    results: dict[str, Any] = {"batch_size": batch_size, "resolution": side}

    def rate(function: Callable[[], Any], count: int) -> float:
        durations = time_calls(function, repeats=batches, warmup=1)
        return count / float(np.median(durations))

    loop_images = images[: max(1, batch_size // 4)]
    results["float32_loop_images_per_s"] = rate(
        lambda: [run_model(model, image[None]) for image in loop_images], len(loop_images)
    )
    results["float32_batch_images_per_s"] = rate(lambda: run_model(model, images), batch_size)
    model.to(memory_format=torch.channels_last)
    try:
        results["bfloat16_channels_last_batch_images_per_s"] = rate(
            lambda: run_model(model, images, precision="bfloat16", channels_last=True), batch_size
        )
        reference, _ = run_model(model, images[:8])
        fast, _ = run_model(model, images[:8], precision="bfloat16", channels_last=True)
        cosine = torch.nn.functional.cosine_similarity(reference, fast, dim=1)
        results["bfloat16_embedding_cosine_min"] = float(cosine.min())
    finally:
        model.to(memory_format=torch.contiguous_format)
    return results


def machine_info(threads: int) -> dict[str, Any]:
    """Return CPU, thread and load information recorded with the timings."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from osoroi.inference import bfloat16_supported

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "load_average_1min": load[0],
        "torch": torch.__version__,
        "bfloat16_supported": bfloat16_supported(),
    }


def print_report(report: dict[str, Any]) -> None:
    """Print the benchmark results as short aligned lines."""
    machine = report["machine"]
    print(f"machine: {machine['cpu']}, {machine['torch_threads']} torch threads, load {machine['load_average_1min']:.1f}")
    match = report["match"]
    print(f"\nmatch of one upload ({report['upload']}, {match['image_size'][0]}x{match['image_size'][1]}) "
          f"at resolution {match['resolution']}, {match['index_items']} items of dimension "
          f"{match['index_dim']}, {match['precision']} ({report['matcher']}):")
    for stage in ("match", "decode", "preprocess", "forward", "search"):
        values = match[stage]
        print(f"  {stage:<11} p50 {values['p50_ms']:8.2f} ms   p95 {values['p95_ms']:8.2f} ms")
    for key in ("search_catalogue", "search_catalogue_reduced", "search_large"):
        if key not in report:
            continue
        values = report[key]
        print(f"\nsearch per query, {values['n']:,} random vectors of dimension {values['dim']} "
              f"({values['memory_mb']:.0f} MB):")
        for name, timing in values.items():
            if isinstance(timing, dict):
                extra = "".join(
                    f"   {label} {timing[label]:.2f}{unit}"
                    for label, unit in (("recall@4", ""), ("build_s", " s"))
                    if label in timing
                )
                print(f"  {name:<28} p50 {timing['p50_ms']:8.2f} ms   p95 {timing['p95_ms']:8.2f} ms{extra}")
            elif name == "faiss":
                print(f"  faiss: {timing}")
    throughput = report["throughput"]
    print(f"\nbatch embedding throughput at resolution {throughput['resolution']}, batch {throughput['batch_size']}:")
    for name in ("float32_loop_images_per_s", "float32_batch_images_per_s", "bfloat16_channels_last_batch_images_per_s"):
        print(f"  {name.removesuffix('_images_per_s'):<30} {throughput[name]:8.1f} images/s")
    if "bfloat16_embedding_cosine_min" in throughput:
        print(f"  bfloat16 vs float32 embedding cosine (min over 8 images): {throughput['bfloat16_embedding_cosine_min']:.4f}")


def existing_file(text: str) -> Path:
    """Parse the path of an existing image file that decodes (an ``argparse`` type)."""
    path = Path(text).expanduser()
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "was not found"
        raise argparse.ArgumentTypeError(f"the file {text!r} {reason}: pass the path of an image file")
    try:
        load_image(path)
    except InvalidImageError as error:
        raise argparse.ArgumentTypeError(f"{error}") from None
    return path


def search_size(text: str) -> int:
    """Parse a number of search vectors, at least the 4 matches of a query (an ``argparse`` type)."""
    return integer_at_least(text, 4, "use at least 4 vectors, one per match")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line of ``python -m osoroi.benchmark``; exit with status 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m osoroi.benchmark",
        description=(
            "Time match latency (ms, p50 and p95), search time per query (ms) and batch embedding "
            "throughput (images/s). Results also go to reports/metrics/benchmark.json."
        ),
    )
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads(),
                        help="torch and faiss threads (default: torch.get_num_threads(), here %(default)s)")
    parser.add_argument("--photo", type=existing_file, default=None,
                        help="image file to match (default: the first clothing-photos/validation photo)")
    parser.add_argument("--repeats", type=positive_int, default=30,
                        help="timed calls per measurement (default: 30)")
    parser.add_argument("--catalogue-items", type=search_size, default=CATALOGUE_SIZE,
                        help=f"random vectors for the catalogue-size search (default: {CATALOGUE_SIZE})")
    parser.add_argument("--index-dim", type=non_negative_int, default=256,
                        help="PCA dimensions of the random stand-in index when no trained index exists, "
                        "0 to keep the model's (default: 256)")
    parser.add_argument("--large-items", type=search_size, default=1_000_000,
                        help="random vectors for the large search (default: 1000000)")
    parser.add_argument("--large-dim", type=positive_int, default=512,
                        help="dimension of the large search; 1M x 2048 float32 would need 8 GB (default: 512)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="images per batch for throughput (default: 32)")
    parser.add_argument("--batches", type=positive_int, default=3,
                        help="timed batches per throughput setting (default: 3)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file for the results (default: reports/metrics/benchmark.json)")
    args = parser.parse_args(argv)

    if args.output is not None and args.output.is_dir():
        parser.error(f"--output {args.output} is a folder: pass the path of the JSON file to write")
    if args.output is not None and args.output.parent.exists() and not args.output.parent.is_dir():
        parser.error(f"--output {args.output}: {args.output.parent} is a file, not a folder")
    # PCA fits the stand-in index on at most 20,000 of the random vectors.
    if args.index_dim and args.index_dim > min(args.catalogue_items, 20_000):
        parser.error(
            f"--index-dim {args.index_dim} exceeds the {min(args.catalogue_items, 20_000)} vectors "
            "that PCA is fitted on: lower --index-dim or raise --catalogue-items"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every benchmark, print the results and write ``reports/metrics/benchmark.json``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    try:
        import_faiss().omp_set_num_threads(args.threads)
    except ImportError:
        pass
    try:
        matcher, description = load_benchmark_matcher(args.catalogue_items, args.index_dim)
    except ValueError as error:
        # The PCA of the stand-in index rejects an --index-dim above the model's dimension.
        print(f"python -m osoroi.benchmark: error: --index-dim {args.index_dim}: {error}", file=sys.stderr)
        return 2
    data, upload = upload_bytes(args.photo)
    report: dict[str, Any] = {"machine": machine_info(args.threads), "matcher": description, "upload": upload}
    logger.info("Timing match latency")
    report["match"] = benchmark_match(matcher, data, args.repeats)
    logger.info("Timing search at %d vectors", args.catalogue_items)
    report["search_catalogue"] = benchmark_search(args.catalogue_items, matcher.index.input_dim, args.repeats, "ivf")
    if matcher.index.dim != matcher.index.input_dim:
        report["search_catalogue_reduced"] = benchmark_search(args.catalogue_items, matcher.index.dim, args.repeats, "ivf")
    logger.info("Timing search at %d vectors", args.large_items)
    report["search_large"] = benchmark_search(args.large_items, args.large_dim, max(5, args.repeats // 3), "ivf")
    logger.info("Timing batch embedding throughput")
    report["throughput"] = benchmark_throughput(matcher.model, args.batch_size, args.batches)
    print_report(report)
    path = write_json(args.output or config.metrics_dir() / "benchmark.json", report)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
