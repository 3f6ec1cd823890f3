//! Checks on the corpus that `scripts/build-corpus.sh` builds (data/generated). Where it is
//! absent they are ignored (see build.rs), and GLIZNET_REQUIRE_CORPUS=1 (CI) makes its absence
//! a build error.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/generated")
}

fn read(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn labels(row: &Value, key: &str) -> Vec<String> {
    row[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// The label normalisation training uses for its own checks: case, `_` and `-` ignored.
fn normalize(label: &str) -> String {
    gliznet::data::labels::label_key(label)
}

#[test]
#[cfg_attr(
    not(gliznet_corpus),
    ignore = "needs data/generated: scripts/build-corpus.sh"
)]
fn corpus_meets_the_size_and_shape_targets() {
    let dir = corpus();
    let train = read(&dir.join("train.jsonl"));
    assert!(train.len() >= 40_000, "{} examples", train.len());
    let mut distinct = HashSet::new();
    for (i, row) in train.iter().enumerate() {
        let positives = labels(row, "labels");
        let negatives = labels(row, "not_labels");
        assert!(
            (1..=5).contains(&positives.len()),
            "line {}: {} positives",
            i + 1,
            positives.len()
        );
        assert!(
            (3..=10).contains(&negatives.len()),
            "line {}: {} negatives",
            i + 1,
            negatives.len()
        );
        let pos: HashSet<String> = positives.iter().map(|l| normalize(l)).collect();
        for n in &negatives {
            assert!(
                !pos.contains(&normalize(n)),
                "line {}: {n:?} is positive and negative",
                i + 1
            );
        }
        assert!(!row["text"].as_str().unwrap().trim().is_empty());
        for l in positives.iter().chain(&negatives) {
            assert_eq!(
                l,
                &l.replace('_', " "),
                "line {}: label {l:?} not normalised",
                i + 1
            );
            distinct.insert(l.clone());
        }
    }
    assert!(
        distinct.len() >= 10_000,
        "{} distinct labels",
        distinct.len()
    );

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("../manifest.json")).unwrap())
            .unwrap();
    let by_source: HashMap<String, u64> =
        serde_json::from_value(manifest["by_source"].clone()).unwrap();
    let mut sources: Vec<&str> = by_source.keys().map(String::as_str).collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            "brown",
            "fine-food",
            "foldoc",
            "gcide",
            "nytEditorialSnippets",
            "tweets",
            "wordnet"
        ]
    );
    let total: u64 = by_source.values().sum();
    assert_eq!(
        total as usize,
        train.len(),
        "the committed manifest matches the corpus"
    );
    for (source, n) in &by_source {
        assert!(*n * 2 <= total, "{source} is {n} of {total}");
    }
}

#[test]
#[cfg_attr(
    not(gliznet_corpus),
    ignore = "needs data/generated: scripts/build-corpus.sh"
)]
fn dev_and_zero_shot_sets_are_disjoint_from_training() {
    let dir = corpus();
    let train_texts: HashSet<String> = read(&dir.join("train.jsonl"))
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    let train_labels: HashSet<String> = read(&dir.join("train.jsonl"))
        .iter()
        .flat_map(|r| {
            labels(r, "labels")
                .into_iter()
                .chain(labels(r, "not_labels"))
        })
        .map(|l| normalize(&l))
        .collect();
    let mut dev_files: Vec<PathBuf> = std::fs::read_dir(dir.join("dev"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dev_files.sort();
    assert!(dev_files.len() >= 9, "{dev_files:?}");
    for path in &dev_files {
        let rows = read(path);
        assert!(!rows.is_empty(), "{}", path.display());
        let leaked = rows
            .iter()
            .filter(|r| train_texts.contains(r["text"].as_str().unwrap()))
            .count();
        // WordNet and GCIDE repeat a few short glosses verbatim across synsets and headwords.
        assert!(
            leaked * 100 <= rows.len(),
            "{}: {leaked} of {} texts are in training",
            path.display(),
            rows.len()
        );
    }
    let fine_food = read(&dir.join("dev/fine-food.jsonl"));
    for gold in ["five-star review", "less than five stars"] {
        let n = fine_food
            .iter()
            .filter(|r| labels(r, "labels") == [gold])
            .count();
        assert!(n >= 300, "fine-food dev: {n} examples of {gold:?}");
    }
    let fiction = read(&dir.join("dev/zeroshot-brown-fiction.jsonl"));
    for genre in [
        "general fiction",
        "mystery",
        "science fiction",
        "adventure",
        "romance",
        "humor",
    ] {
        assert!(
            fiction.iter().any(|r| labels(r, "labels") == [genre]),
            "{genre} missing"
        );
        assert!(
            !train_labels.contains(genre),
            "zero-shot label {genre:?} appears in training"
        );
    }
}

/// The dev suite (`scripts/build-dev-suite.sh`): at least 8 tasks of at least 4 kinds, each
/// with enough examples, every label a task names, and no suite text in any training file
/// (`train*.jsonl`: the mix and the files the experiment scripts derive from it) or in the
/// training-time validation set (normalised: case and whitespace ignored).
#[test]
#[cfg_attr(
    not(all(gliznet_corpus, gliznet_dev_suite)),
    ignore = "needs data/generated and its suite: scripts/build-corpus.sh, scripts/build-dev-suite.sh"
)]
fn dev_suite_is_broad_and_never_trained_on() {
    let dir = corpus();
    let suite_dir = dir.join("suite");
    let normalise = |text: &str| -> String {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let mut trained: HashSet<String> = HashSet::new();
    let mut training_files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("train") && name.ends_with(".jsonl")
        })
        .collect();
    assert!(training_files.contains(&dir.join("train.jsonl")));
    training_files.push(dir.join("validation-mix.jsonl"));
    for file in &training_files {
        for row in read(file) {
            trained.insert(normalise(row["text"].as_str().unwrap()));
        }
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(suite_dir.join("suite.json")).unwrap())
            .unwrap();
    let tasks = manifest["tasks"].as_object().unwrap();
    assert!(tasks.len() >= 8, "{} tasks", tasks.len());
    let kinds: HashSet<&str> = tasks
        .values()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.len() >= 4, "kinds: {kinds:?}");
    let mut seen_in_suite = HashSet::new();
    for (name, task) in tasks {
        let rows = read(&suite_dir.join(format!("{name}.jsonl")));
        assert_eq!(
            rows.len() as u64,
            task["examples"].as_u64().unwrap(),
            "{name}"
        );
        assert!(rows.len() >= 300, "{name}: {} examples", rows.len());
        let names: HashSet<String> = task["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        for (i, row) in rows.iter().enumerate() {
            let text = normalise(row["text"].as_str().unwrap());
            assert!(
                !trained.contains(&text),
                "{name} line {}: the text is in the training data",
                i + 1
            );
            assert!(
                seen_in_suite.insert(text),
                "{name} line {}: the text is in another task",
                i + 1
            );
            let all: Vec<String> = [labels(row, "labels"), labels(row, "not_labels")].concat();
            assert!(
                all.iter().all(|l| names.contains(l)),
                "{name} line {}",
                i + 1
            );
            match task["scoring"].as_str().unwrap() {
                "single_label" => {
                    assert_eq!(labels(row, "labels").len(), 1, "{name} line {}", i + 1);
                    assert_eq!(all.len(), names.len(), "{name} line {}", i + 1);
                }
                "relevance" => assert_eq!(all.len(), 1, "{name} line {}", i + 1),
                other => panic!("{name}: unknown scoring {other}"),
            }
        }
    }
}
