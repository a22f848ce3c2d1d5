"""Out-of-core CTR preprocessing benchmark: a synthetic Criteo-format file -> Parquet shards.

    python benchmarks/bench_ctr_ooc.py --rows 10000000

Writes a random but Criteo-like file (TAB separated, no header: label with a 25% positive rate, 13 integer counts
with per-column missing rates, 26 categorical fields of 8-hex-digit hashes with Zipfian frequencies and Criteo-
like cardinalities) into a temporary folder, runs :func:`attnrec.data.ctr_shards.preprocess_to_shards` on it in a child
process, and prints one JSON line: rows/s of the two passes together and the child's peak RSS (goal < 4 GB).
The temporary folder (file and shards) is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

#: categorical cardinalities, shaped like Criteo's (C3, C4, C12, C16, C21 in the millions on the full data)
CARDINALITY = [
    1460, 583, 10_000_000, 2_200_000, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_000_000, 3_194, 27, 14_992,
    5_000_000, 10, 5_652, 2_173, 4, 7_000_000, 18, 15, 286_181, 105, 142_572,
]  # fmt: skip
CAT_MISSING = [0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.44, 0.44, 0.03, 0.76, 0, 0.03,
               0.44, 0.44]  # fmt: skip
INT_MISSING = [0.45, 0, 0.21, 0.22, 0.03, 0.22, 0.04, 0, 0.04, 0.45, 0.04, 0.77, 0.22]
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex8(codes: np.ndarray) -> pl.Series:
    """8 lowercase hex digits of each uint32 (vectorised through a nibble table)."""
    c = codes.astype(np.uint32)
    nibbles = np.stack([(c >> np.uint32(4 * (7 - k))) & np.uint32(15) for k in range(8)], axis=1)
    raw = _HEX[nibbles].reshape(-1).tobytes()
    return pl.Series(np.frombuffer(raw, dtype="S8")).cast(pl.String)


def generate(path: Path, rows: int, *, seed: int = 0, chunk: int = 500_000) -> None:
    """Write ``rows`` Criteo-format lines to ``path``."""
    rng = np.random.default_rng(seed)
    with path.open("wb") as fh:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cols: dict[str, pl.Series] = {"label": pl.Series((rng.random(n) < 0.25).astype(np.int8))}
            for i, miss in enumerate(INT_MISSING):
                v = np.floor(rng.lognormal(mean=1.0 + 0.3 * i, sigma=1.5, size=n)).astype(np.int64)
                if i == 1:
                    v -= 1  # I2 has -1 values in Criteo
                s = pl.Series(v)
                cols[f"I{i + 1}"] = s.set(pl.Series(rng.random(n) < miss), None) if miss else s  # type: ignore[arg-type]
            for i, (card, miss) in enumerate(zip(CARDINALITY, CAT_MISSING, strict=True)):
                rank = (rng.zipf(1.15, size=n) - 1) % card
                codes = (rank.astype(np.uint64) * np.uint64(2654435761) + np.uint64(i * 7919)) % np.uint64(
                    2**32
                )
                s = _hex8(codes)
                cols[f"C{i + 1}"] = s.set(pl.Series(rng.random(n) < miss), None) if miss else s  # type: ignore[arg-type]
            pl.DataFrame(cols).write_csv(
                fh, separator="\t", include_header=False, quote_style="never", null_value=""
            )


def _child(src: str, out: str, rows_per_shard: int) -> None:
    from attnrec.data.ctr_shards import preprocess_to_shards

    t0 = time.perf_counter()
    data = preprocess_to_shards(src, "criteo", out, rows_per_shard=rows_per_shard)
    seconds = time.perf_counter() - t0
    vocab = sum(data.schema.vocab_sizes)
    print(json.dumps({"seconds": seconds, "rows": len(data), "shards": data.n_shards, "vocab_total": vocab}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rows-per-shard", type=int, default=1_000_000)
    ap.add_argument("--tmp", default=None, help="parent folder for the temporary data (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated file and shards")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child(args._child[0], args._child[1], args.rows_per_shard)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_ctr_ooc_", dir=args.tmp))
    try:
        src = tmp / "criteo.tsv"
        t0 = time.perf_counter()
        generate(src, args.rows)
        gen_s = time.perf_counter() - t0
        size = src.stat().st_size
        cmd = [
            sys.executable,
            __file__,
            "--rows-per-shard",
            str(args.rows_per_shard),
            "--_child",
            str(src),
            str(tmp / "shards"),
        ]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        peak_kb = resource.getrusage(
            resource.RUSAGE_CHILDREN
        ).ru_maxrss  # Linux: KiB, max over waited children
        shard_bytes = sum(p.stat().st_size for p in (tmp / "shards").glob("*.parquet"))
        record = {
            "bench": "ctr_ooc",
            "command": f"python benchmarks/bench_ctr_ooc.py --rows {args.rows}",
            "rows": child["rows"],
            "file_gb": round(size / 1e9, 3),
            "generate_s": round(gen_s, 1),
            "preprocess_s": round(child["seconds"], 1),
            "rows_per_s": round(child["rows"] / child["seconds"]),
            "mb_per_s": round(size / 1e6 / child["seconds"], 1),
            "peak_rss_gb": round(peak_kb / 2**20, 3),
            "shards": child["shards"],
            "shard_gb": round(shard_bytes / 1e9, 3),
            "vocab_total": child["vocab_total"],
        }
        print(json.dumps(record))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
