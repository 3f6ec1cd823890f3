"""Classify a Parquet dataset on a Ray cluster: read, score every row, write.

    python examples/ray_batch.py --input in.parquet --output scored/ --labels economy,sports,cooking
    # on a running cluster (the package installed on every node: pip install "./python[ray]"):
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python examples/ray_batch.py --input s3://bucket/texts/ --output s3://bucket/scored/ \\
        --labels-file labels.txt --actors 8

Each output row is the input row with `scores` (list<float32>, in the labels' order) and
`predicted` (list<string>) added, as `gliznet predict --output FILE.parquet` writes them.
"""

import argparse

import ray

import gliznet.ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="Parquet file or directory (local or s3://...)")
    parser.add_argument("--output", required=True, help="directory for the scored Parquet files")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated labels for every row")
    labels.add_argument("--labels-file", help="one label per line")
    labels.add_argument("--labels-column", help="a column holding each row's list of labels")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--model", help="a model directory on every node (default: the built-in model)")
    parser.add_argument("--precision", choices=["f32", "bf16", "int8"])
    parser.add_argument("--actors", type=int, default=2, help="classifiers running at once (one per CPU slot)")
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1_000, help="rows per batch handed to an actor")
    parser.add_argument(
        "--blocks",
        type=int,
        help="split the input into this many blocks first (Ray reads a small file as one block, "
        "which one actor would take whole)",
    )
    args = parser.parse_args()

    if args.labels_file:
        with open(args.labels_file, encoding="utf-8") as f:
            label_list = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    elif args.labels:
        label_list = [label.strip() for label in args.labels.split(",")]
    else:
        label_list = None

    ray.init()
    dataset = ray.data.read_parquet(args.input)
    if args.blocks:
        dataset = dataset.repartition(args.blocks)
    scored = dataset.map_batches(
        gliznet.ray.Predictor,
        fn_constructor_kwargs={
            "labels": label_list,
            "labels_column": args.labels_column,
            "text_column": args.text_column,
            "model": args.model,
            "precision": args.precision,
        },
        batch_format="pyarrow",
        batch_size=args.batch_size,
        concurrency=args.actors,
        num_cpus=args.cpus_per_actor,
        # The encoder's threads: one per CPU the actor holds.
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(args.cpus_per_actor)}},
    )
    scored.write_parquet(args.output)


if __name__ == "__main__":
    main()
