"""Model-only encoder throughput: texts/s by batch size, with/without length sorting, tokenizer vs forward.

Usage: python bench/model_throughput.py [--device cpu|cuda|auto] [--n 1024] [--batch-sizes 32,64,128]
       [--repeats 3] [--fp16]   (--fp16 on CUDA also times fp16 and reports min cosine vs fp32)
Texts are BANKING77 test sentences (cycled to --n). Writes bench/results/model_throughput[-<device>].json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import environment, load_split, table, write_result

from labelmesh.ml.encoder import FP16_MIN_COSINE, HashingEncoder, MiniLMEncoder, min_cosine


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_minilm(encoder: MiniLMEncoder, texts: list[str], batch_sizes, repeats: int, label: str) -> list[dict]:
    rows = []
    encoder.batch_size = max(batch_sizes)
    encoder.encode(texts[: 2 * encoder.batch_size])  # warm-up (allocations, CUDA kernels)
    tokens = encoder.tokenize(texts)
    t_tok = median_seconds(lambda: encoder.tokenize(texts), repeats)
    for bs in batch_sizes:
        for sort in (True, False):
            encoder.batch_size, encoder.sort_by_length = bs, sort
            t_fwd = median_seconds(lambda: encoder.embed_tokens(tokens), repeats)
            t_all = median_seconds(lambda: encoder.encode(texts), repeats)
            rows.append(
                {
                    "model": label,
                    "batch_size": bs,
                    "sort_by_length": sort,
                    "texts_per_s": len(texts) / t_all,
                    "forward_only_texts_per_s": len(texts) / t_fwd,
                    "tokenizer_only_texts_per_s": len(texts) / t_tok,
                    "tokenizer_share_of_time": t_tok / t_all,
                    "seconds_end_to_end": t_all,
                }
            )
            print(f"  {label} bs={bs} sort={sort}: {len(texts) / t_all:,.0f} texts/s", flush=True)
    encoder.sort_by_length = True
    return rows


def bench_call_sizes(encoder: MiniLMEncoder, texts: list[str], call_sizes, batch_size: int, repeats: int) -> list[dict]:
    """Length sorting only reorders within one encode() call: time the same texts sent in smaller calls,
    as a service does when it encodes each consumed batch separately."""
    rows = []
    encoder.batch_size, encoder.sort_by_length = batch_size, True
    for call in call_sizes:
        chunks = [texts[i : i + call] for i in range(0, len(texts), call)]
        t = median_seconds(lambda: [encoder.encode(c) for c in chunks], repeats)
        rows.append({"model": "minilm fp32", "call_size": call, "batch_size": batch_size, "sort_by_length": True, "texts_per_s": len(texts) / t})
        print(f"  call size {call} (micro-batch {batch_size}, sorted): {len(texts) / t:,.0f} texts/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=1024, help="number of texts per timed run")
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--call-sizes", default="32,128,512", help="texts per encode() call, sorted, smallest batch size")
    ap.add_argument("--fp16", action="store_true", help="CUDA only: also time fp16 and compare with fp32")
    args = ap.parse_args()

    env_at_start = environment()
    pool, _ = load_split("test")
    texts = [pool[i % len(pool)] for i in range(args.n)]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    fp32 = MiniLMEncoder(device=args.device)
    device = fp32.device.type
    tokens = fp32.tokenize(texts)
    rows = bench_minilm(fp32, texts, batch_sizes, args.repeats, "minilm fp32")

    call_rows = bench_call_sizes(fp32, texts, [int(c) for c in args.call_sizes.split(",")], min(batch_sizes), args.repeats)

    fp16_check = None
    if args.fp16 and device == "cuda":
        fp16 = MiniLMEncoder(device=args.device, fp16=True)
        rows += bench_minilm(fp16, texts, batch_sizes, args.repeats, "minilm fp16")
        a, b = fp32.embed_tokens(tokens), fp16.embed_tokens(tokens)
        fp16_check = {"min_cosine_fp16_vs_fp32": min_cosine(a, b), "mean_cosine": float((a * b).sum(axis=1).mean()),
                      "goal": FP16_MIN_COSINE}

    hashing = HashingEncoder()
    hashing.encode(texts[:64])
    t_hash = median_seconds(lambda: hashing.encode(texts), args.repeats)
    rows.append({"model": hashing.name, "batch_size": len(texts), "sort_by_length": False, "texts_per_s": len(texts) / t_hash})

    payload = {
        "benchmark": "model_throughput",
        "device": device,
        "texts": f"{args.n} BANKING77 test sentences (mean {tokens.n_tokens.mean():.1f} tokens, max {tokens.n_tokens.max()})",
        "repeats": args.repeats,
        "statistic": "median of repeats",
        "environment": env_at_start,
        "load_average_at_end": os.getloadavg(),
        "rows": rows,
        "call_size_rows": call_rows,
        "fp16_check": fp16_check,
    }
    path = write_result("model_throughput" if device == "cpu" else f"model_throughput-{device}", payload)
    print(f"\ndevice={device}  n={args.n}  median of {args.repeats}")
    print(
        table(
            ["model", "batch", "sorted", "texts/s", "forward-only/s", "tokenizer-only/s", "tok share"],
            [
                [r["model"], r["batch_size"], r["sort_by_length"], f"{r['texts_per_s']:,.0f}",
                 f"{r.get('forward_only_texts_per_s', float('nan')):,.0f}",
                 f"{r.get('tokenizer_only_texts_per_s', float('nan')):,.0f}",
                 f"{r.get('tokenizer_share_of_time', float('nan')):.1%}"]
                for r in rows
            ],
        )
    )
    print(f"\nsame texts in smaller encode() calls (sorting only within a call, micro-batch {min(batch_sizes)}):")
    print(table(["call size", "texts/s"], [[r["call_size"], f"{r['texts_per_s']:,.0f}"] for r in call_rows]))
    if fp16_check:
        print(f"fp16 vs fp32: min cosine {fp16_check['min_cosine_fp16_vs_fp32']:.6f} (goal >= 0.999)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
