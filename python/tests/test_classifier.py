"""The Python package against the CLI: the same scores (1e-6), the same errors as ValueError,
one classifier shared by threads. GLIZNET_BIN names the CLI (default target/release/gliznet)."""

import json
import os
import pathlib
import subprocess
import threading

import numpy as np
import pytest

import gliznet

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("GLIZNET_BIN", str(ROOT / "target" / "release" / "gliznet"))
TEXTS = [
    "The central bank raised interest rates again",
    "The team won the final match in extra time",
    "Slow-cooked beans with garlic, onions and a long list of spices",
]
LABELS = ["economy", "sports", "cooking"]


def cli(*args, stdin=None):
    out = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def classifier():
    return gliznet.Classifier(precision="f32")


def assert_same(records, expected):
    assert len(records) == len(expected)
    for r, e in zip(records, expected):
        assert r["text"] == e["text"] and r["model"] == e["model"]
        assert [l["label"] for l in r["labels"]] == [l["label"] for l in e["labels"]]
        assert [l["predicted"] for l in r["labels"]] == [l["predicted"] for l in e["labels"]]
        for l, m in zip(r["labels"], e["labels"]):
            assert abs(l["score"] - m["score"]) < 1e-6, (l, m)


def texts_jsonl(texts, labels=None):
    return "".join(json.dumps({"text": t, **({"labels": labels[i]} if labels else {})}) + "\n"
                   for i, t in enumerate(texts))


def test_predict_matches_the_cli(classifier):
    records = classifier.predict(TEXTS, LABELS)
    assert_same(records, cli("predict", "--f32", "--format", "json", "--input", "-",
                             "--labels", ",".join(LABELS), stdin=texts_jsonl(TEXTS)))
    single = classifier.predict(TEXTS, LABELS, multi_label=False)
    assert_same(single, cli("predict", "--f32", "--format", "json", "--single-label", "--input", "-",
                            "--labels", ",".join(LABELS), stdin=texts_jsonl(TEXTS)))
    assert [r["labels"][i]["predicted"] for i, r in enumerate(single)] == [True, True, True]
    strict = classifier.predict(TEXTS, LABELS, threshold=0.9)
    assert_same(strict, cli("predict", "--f32", "--format", "json", "--threshold", "0.9", "--input", "-",
                            "--labels", ",".join(LABELS), stdin=texts_jsonl(TEXTS)))


def test_per_text_labels_and_descriptions(classifier):
    per_text = [["economy", "sports"], ["sports", {"label": "cooking", "description": "food and recipes"}],
                ["cooking"]]
    records = classifier.predict(TEXTS, per_text)
    assert_same(records, cli("predict", "--f32", "--format", "json", "--input", "-",
                             stdin=texts_jsonl(TEXTS, per_text)))
    assert records[1]["labels"][1]["label"] == "cooking"


def test_scores_is_a_float32_array_of_the_predict_scores(classifier):
    scores = classifier.scores(TEXTS, LABELS)
    assert scores.dtype == np.float32 and scores.shape == (3, 3)
    records = classifier.predict(TEXTS, LABELS)
    expected = np.array([[l["score"] for l in r["labels"]] for r in records], dtype=np.float32)
    np.testing.assert_array_equal(scores, expected)
    assert classifier.scores([], LABELS).shape == (0, 3)
    assert classifier.predict([], LABELS) == []


@pytest.mark.parametrize("call, message", [
    (lambda c: c.predict(["a", ""], ["x"]), "texts[1]"),
    (lambda c: c.predict(["a"], ["x", ""]), "label 2 of 2 is empty"),
    (lambda c: c.predict(["a"], ["x", "X"]), "duplicate label"),
    (lambda c: c.predict(["a"], []), "the label list is empty"),
    (lambda c: c.predict(["a", "b"], [["x"]]), "1 lists for 2 texts"),
    (lambda c: c.predict(["a"], [{"label": "x"}]), "labels[0]"),
    (lambda c: c.predict(["a"], ["x"], batch_size=0), "batch_size"),
    (lambda c: c.predict(["a"], ["x"], threshold=float("nan")), "threshold"),
    (lambda c: c.predict(["a"], ["x"], multi_label=False, threshold=0.5), "threshold"),
])
def test_bad_input_is_a_value_error_naming_the_place(classifier, call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(classifier)


def test_bad_arguments_at_construction():
    with pytest.raises(ValueError, match="precision"):
        gliznet.Classifier(precision="fp8")
    with pytest.raises(ValueError):
        gliznet.Classifier(model="/nonexistent/model/dir")


def test_one_classifier_shared_by_threads(classifier):
    expected = classifier.predict(TEXTS, LABELS)
    results, errors = [None] * 8, []

    def work(i):
        try:
            results[i] = classifier.predict(TEXTS, LABELS)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert_same(r, expected)
