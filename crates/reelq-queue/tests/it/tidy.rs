//! Structure that the docs promise and tests keep true: only this crate talks to Redis, and
//! every repository path the docs cite exists.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `[dependencies]` table of a Cargo.toml (not dev- or build-dependencies).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut in_table = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
        } else if in_table && let Some((name, _)) = line.split_once('=') {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn only_the_queue_crate_and_test_harnesses_depend_on_redis() {
    // The harnesses start servers and read INFO; the product reaches Redis only here.
    let allowed = ["reelq-queue", "reelq-testkit", "tests"];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    crates.push(workspace().join("tests"));
    let mut checked = 0;
    for dir in crates {
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        checked += 1;
        if !allowed.contains(&name.as_str()) {
            assert!(
                !normal_dependencies(&manifest)
                    .iter()
                    .any(|dep| dep == "redis"),
                "{name} depends on redis; only reelq-queue may talk to Redis"
            );
        }
    }
    assert!(checked >= 10, "read {checked} crates");
}

#[test]
fn the_readme_is_a_front_door_and_the_manual_lives_under_docs() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines: what reelq is, the two commands, the quickstart and \
         links; the rest goes under docs/"
    );
}

#[test]
fn every_path_the_docs_cite_exists() {
    let roots = [
        "crates/",
        "scripts/",
        "tests/",
        "bench/",
        "deploy/",
        "docs/",
        "examples/",
    ];
    let mut cited = 0;
    let mut docs = vec![
        PathBuf::from("README.md"),
        PathBuf::from("ARCHITECTURE.md"),
        PathBuf::from("CONTRIBUTING.md"),
    ];
    for entry in std::fs::read_dir(workspace().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            docs.push(path.strip_prefix(workspace()).unwrap().to_owned());
        }
    }
    assert!(docs.len() >= 10, "{docs:?}");
    for doc in docs {
        let doc = doc.display().to_string();
        let text = std::fs::read_to_string(workspace().join(&doc)).unwrap();
        for (i, quoted) in text.split('`').enumerate() {
            if i % 2 == 0 || !roots.iter().any(|root| quoted.starts_with(root)) {
                continue;
            }
            // A glob or a `<placeholder>` names files in a directory: the directory must exist.
            let path = match quoted.split_once(['*', '<']) {
                Some((dir, _)) => dir.rsplit_once('/').map_or(dir, |(dir, _)| dir),
                None => quoted.trim_end_matches('/'),
            };
            assert!(
                workspace().join(path).exists(),
                "{doc} cites `{quoted}`, which does not exist"
            );
            cited += 1;
        }
    }
    assert!(cited > 20, "found {cited} cited paths");
}

#[test]
fn no_tracked_text_points_outside_the_repository() {
    let mut stack = vec![workspace()];
    let mut read = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.')
                || ["target", "node_modules", "data", "results"].contains(&name.as_str())
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                read += 1;
                let parent_of_repo = ["..", "/shared/"].concat();
                assert!(
                    !text.contains(&parent_of_repo),
                    "{} refers to a path outside the repository",
                    path.display()
                );
            }
        }
    }
    assert!(read > 50, "read {read} files");
}
