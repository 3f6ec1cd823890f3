"""Writes a Parquet file of about 1 GB for the memory check of `predict --input FILE.parquet`:
ROWS rows of a short text and an incompressible binary payload, in row groups of GROUP rows.

    python3 bench/parquet-memory.py /tmp/big.parquet [--rows 10000] [--payload 100000] [--group 1000]
        [--page-check 1024]
    /usr/bin/time -v target/release/gliznet predict --input /tmp/big.parquet \
        --labels economy,sports,cooking --output /tmp/big-out.parquet   # "Maximum resident set size"
"""

import argparse
import os

import pyarrow as pa
import pyarrow.parquet as pq

TOPICS = ["The central bank raised rates", "A late goal won the cup", "Knead the dough twice"]

parser = argparse.ArgumentParser()
parser.add_argument("path")
parser.add_argument("--rows", type=int, default=10_000)
parser.add_argument("--payload", type=int, default=100_000, help="bytes of payload per row")
parser.add_argument("--group", type=int, default=1_000, help="rows per row group")
parser.add_argument(
    "--page-check",
    type=int,
    default=1024,
    help="rows between checks of the page size (pyarrow's write_batch_size; its default 1024 "
    "lets one page hold 1024 payloads)",
)
args = parser.parse_args()

schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("payload", pa.binary())])
with pq.ParquetWriter(
    args.path, schema, compression="snappy", write_batch_size=args.page_check
) as writer:
    for start in range(0, args.rows, args.group):
        ids = list(range(start, min(start + args.group, args.rows)))
        writer.write_table(
            pa.table(
                {
                    "id": ids,
                    "text": [f"{TOPICS[i % 3]} (row {i})" for i in ids],
                    "payload": [os.urandom(args.payload) for _ in ids],
                },
                schema=schema,
            ),
            row_group_size=args.group,
        )
print(f"{args.path}: {os.path.getsize(args.path) / 1e9:.2f} GB, {args.rows} rows")
