"""gliznet.ray on a real local Ray cluster: a head and one more node, each its own `ray start`
process on 127.0.0.1, stopped with `ray stop` at the end. 20,000 rows are classified by two
actors, one on each node, and every row is checked against `gliznet predict --output
FILE.parquet` for the same row (both in f32: in bf16 a text's scores move by up to about 1e-3
with the padding of the batch it falls in, and Ray's batches are not the CLI's).

Skipped when Ray is not installed, unless GLIZNET_REQUIRE_RAY=1 (as in CI). GLIZNET_BIN names
the CLI (default target/release/gliznet).
"""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

ray = pytest.importorskip("ray") if os.environ.get("GLIZNET_REQUIRE_RAY") != "1" else __import__("ray")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import gliznet.ray  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("GLIZNET_BIN", str(ROOT / "target" / "release" / "gliznet"))
ROWS = 20_000
LABELS = ["economy", "sports", "cooking", "weather", "politics"]
RAY = str(pathlib.Path(sys.executable).with_name("ray"))
# One actor per node: each node offers one slot of this resource, and each actor takes one.
SLOT = "gliznet_actor_slot"

SUBJECTS = ["The central bank", "The home team", "Our chef", "The storm", "The senate", "A reader"]
VERBS = ["raised", "won", "braised", "flooded", "passed", "reviewed"]
OBJECTS = ["interest rates", "the cup final", "the short ribs", "the coast road", "the budget bill", "a novel"]


def text(i: int) -> str:
    return (
        f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]} "
        f"on day {i} of the year"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cmd(*args: str) -> None:
    subprocess.run([RAY, *args], check=True, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--num-cpus=2",
        f"--resources={{\"{SLOT}\": 1}}",
        "--object-store-memory=300000000",
        "--disable-usage-stats",
    ]
    temp = tempfile.mkdtemp(prefix="gliznet-ray-")
    try:
        ray_cmd(
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            *common,
        )
        ray_cmd("start", f"--address={address}", "--node-ip-address=127.0.0.1", *common)
        ray.init(address=address, logging_level="ERROR")
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_nodes_classify_every_row_as_the_cli_does(cluster, tmp_path):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2, nodes

    table = pa.table(
        {
            "id": pa.array(range(ROWS), type=pa.int64()),
            "text": pa.array([text(i) for i in range(ROWS)]),
            "source": pa.array([f"feed-{i % 7}" for i in range(ROWS)]),
        }
    )
    source = tmp_path / "in.parquet"
    pq.write_table(table, source, row_group_size=5_000)

    reference = tmp_path / "cli.parquet"
    subprocess.run(
        [BIN, "predict", "--f32", "--input", str(source), "--labels", ",".join(LABELS), "--output", str(reference)],
        check=True,
        capture_output=True,
    )

    class NodeRecordingPredictor(gliznet.ray.Predictor):
        """Adds the node each batch ran on, to check that both nodes did work."""

        def __call__(self, batch):
            import ray as ray_in_actor

            out = super().__call__(batch)
            node = ray_in_actor.get_runtime_context().get_node_id()
            return out.append_column("node", pa.array([node] * out.num_rows, type=pa.string()))

    scored_dir = tmp_path / "scored"
    # Ray reads a small file as one block, which one actor would take whole: split it.
    dataset = ray.data.read_parquet(str(source)).repartition(20).map_batches(
        NodeRecordingPredictor,
        fn_constructor_kwargs={"labels": LABELS, "precision": "f32"},
        batch_format="pyarrow",
        batch_size=1_000,
        concurrency=2,
        num_cpus=1,
        resources={SLOT: 1},
    )
    dataset.write_parquet(str(scored_dir))

    scored = pq.read_table(scored_dir).sort_by("id")
    expected = pq.read_table(reference)
    assert scored.num_rows == ROWS
    assert scored.column_names == ["id", "text", "source", "scores", "predicted", "node"]
    assert expected.column_names == ["id", "text", "source", "scores", "predicted"]
    assert scored.column("id").to_pylist() == list(range(ROWS))
    for column in ("text", "source"):
        assert scored.column(column).to_pylist() == expected.column(column).to_pylist()
    assert scored.schema.field("scores").type == pa.list_(pa.float32())

    got_scores = scored.column("scores").to_pylist()
    want_scores = expected.column("scores").to_pylist()
    got_predicted = scored.column("predicted").to_pylist()
    want_predicted = expected.column("predicted").to_pylist()
    mismatched = [
        row
        for row in range(ROWS)
        if len(got_scores[row]) != len(LABELS)
        or any(abs(g - w) > 1e-6 for g, w in zip(got_scores[row], want_scores[row]))
        or got_predicted[row] != want_predicted[row]
    ]
    assert not mismatched, f"{len(mismatched)} rows differ from the CLI, first {mismatched[:5]}"

    ran_on = set(scored.column("node").to_pylist())
    assert ran_on == {n["NodeID"] for n in nodes}, ran_on


def test_bad_batches_raise_value_errors_that_name_the_column():
    predictor = gliznet.ray.Predictor(labels=LABELS)
    with pytest.raises(ValueError, match='no column "text"'):
        predictor(pa.table({"body": ["a"]}))
    with pytest.raises(ValueError, match="row 1 .* the text is null"):
        predictor(pa.table({"text": ["a", None]}))
    with pytest.raises(ValueError, match='already has a column "scores"'):
        predictor(pa.table({"text": ["a"], "scores": [1]}))
    with pytest.raises(ValueError, match="exactly one of labels= and labels_column="):
        gliznet.ray.Predictor()
    per_row = gliznet.ray.Predictor(labels_column="candidates")
    out = per_row(pa.table({"text": ["rates rose", "a late goal"], "candidates": [["economy"], ["sports", "cooking"]]}))
    assert [len(s) for s in out.column("scores").to_pylist()] == [1, 2]
    empty = predictor(pa.table({"text": pa.array([], type=pa.string())}))
    assert empty.num_rows == 0 and empty.column_names == ["text", "scores", "predicted"]
