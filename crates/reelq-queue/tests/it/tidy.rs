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

/// Every `.rs` file under `dir`, at any depth.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The test files that re-read something nothing announces, each with why there is no event
/// to await and how many sleeps it has. A test that sleeps elsewhere fails this check: wait on
/// an event (the ledger's change feed, simulator events, a process's output) instead.
const RE_READS: &[(&str, usize, &str)] = &[
    (
        "crates/reelq-cli/tests/cli/history.rs",
        1,
        "an archive pass announces nothing",
    ),
    (
        "crates/reelq-producer/tests/it/api.rs",
        1,
        "a 503 asks to retry after 1 s",
    ),
    (
        "crates/reelq-providers/tests/conformance.rs",
        1,
        "a provider's task is polled: its API has no event",
    ),
    (
        "crates/reelq-providers/tests/contract.rs",
        1,
        "a result URL's lifetime must pass",
    ),
    (
        "crates/reelq-queue/tests/it/archive.rs",
        1,
        "the archiver's lease lapses by the clock",
    ),
    (
        "crates/reelq-queue/tests/it/cluster.rs",
        1,
        "a claim finds nothing due until a lease runs out",
    ),
    (
        "crates/reelq-queue/tests/it/history.rs",
        1,
        "a hold lasts a minimum time, read while it runs",
    ),
    (
        "crates/reelq-queue/tests/it/ledger/limits.rs",
        1,
        "a rate limit's next token comes by the clock",
    ),
    (
        "crates/reelq-worker/tests/it/archive.rs",
        1,
        "an archive pass announces nothing",
    ),
    (
        "crates/reelq-worker/tests/it/dashboard.rs",
        3,
        "a page refreshes itself; the server starts",
    ),
    (
        "crates/reelq-worker/tests/it/listeners.rs",
        1,
        "a port opens when the process is ready",
    ),
    (
        "crates/reelq-worker/tests/it/accounts.rs",
        1,
        "a limiter's hold changes no state",
    ),
    (
        "crates/reelq-worker/tests/it/notify.rs",
        1,
        "a webhook's delivery changes no job state",
    ),
    (
        "tests/src/chaos.rs",
        3,
        "reconnecting after an injected Redis fault; the run's deadline",
    ),
];

#[test]
fn tests_sleep_only_where_nothing_announces_a_change() {
    let mut files = Vec::new();
    rust_files(&workspace().join("tests/src"), &mut files);
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        rust_files(&entry.unwrap().path().join("tests"), &mut files);
    }
    let mut found = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        // Spelled in two pieces, so this file does not count itself.
        let sleeps = text.matches(concat!("time::", "sleep(")).count();
        if sleeps == 0 {
            continue;
        }
        found += 1;
        let name = path
            .strip_prefix(workspace())
            .unwrap()
            .display()
            .to_string();
        let allowed = RE_READS.iter().find(|(file, _, _)| *file == name);
        assert!(
            allowed.is_some_and(|(_, most, _)| sleeps <= *most),
            "{name} sleeps {sleeps} times: await an event, or list it in RE_READS with why \
             nothing announces the change"
        );
    }
    assert!(found > 5, "found {found} files that re-read");
}

#[test]
fn no_library_exposes_anyhow_in_its_public_api() {
    // The binaries' edges and the test harnesses may use anyhow; a library's public
    // functions answer with its own error type.
    let exempt = ["reelq-testkit"];
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if exempt.contains(&name.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for path in files {
            if path.file_name().is_some_and(|file| file == "main.rs")
                || path.components().any(|part| part.as_os_str() == "bin")
            {
                continue;
            }
            checked += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let line = line.trim_start();
                let public = line.starts_with("pub fn ") || line.starts_with("pub async fn ");
                assert!(
                    !(public && line.contains("anyhow::")),
                    "{}: a public function answers with anyhow: {line}",
                    path.display()
                );
            }
        }
    }
    assert!(checked > 50, "read {checked} library files");
}

/// The longest a Rust file should be: one concern a reader holds at once.
const MOST_LINES: usize = 600;

#[test]
fn every_rust_file_is_short_enough_to_read() {
    let mut files = Vec::new();
    rust_files(&workspace().join("tests/src"), &mut files);
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 100, "read {} files", files.len());
    for path in files {
        let name = path
            .strip_prefix(workspace())
            .unwrap()
            .display()
            .to_string();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= MOST_LINES,
            "{name} has {lines} lines (at most {MOST_LINES}): split it by concern"
        );
    }
}

/// Every ledger script has its edge beside it (`scripts/<name>.rs`, whose `ledger_edge!` names
/// the file), says what it takes and answers, and reads no argument and writes no reply by
/// position: only `prelude.lua` reads `ARGV`, and nothing declares keys but the runner.
#[test]
fn every_script_has_a_typed_edge_and_reads_nothing_by_position() {
    let dir = workspace().join("crates/reelq-queue/src/scripts");
    let mut scripts = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = name.strip_suffix(".lua") else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        if name == "prelude.lua" {
            continue;
        }
        for positional in ["ARGV[", "KEYS["] {
            assert!(
                !text.contains(positional),
                "{name} reads {positional}: read its Args by name (A.field)"
            );
        }
        for (number, line) in text.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with("return {"),
                "{name}:{}: a reply by position; return cjson.encode of a table with names",
                number + 1
            );
        }
        if name == "jobs.lua" {
            // Helpers of the enqueue scripts; their shared types are in jobs.rs.
            assert!(dir.join("jobs.rs").exists());
            continue;
        }
        scripts += 1;
        assert!(
            text.contains("-- Args (") && text.contains("-- Reply"),
            "{name} does not say what it takes (-- Args (...)) and answers (-- Reply)"
        );
        let edge = std::fs::read_to_string(dir.join(format!("{stem}.rs")))
            .unwrap_or_else(|_| panic!("{name} has no {stem}.rs beside it"));
        assert!(
            edge.contains(&format!("\"{name}\"")) && edge.contains("ledger_edge!"),
            "{stem}.rs does not make the edge of {name} (ledger_edge!)"
        );
        assert_eq!(
            edge.contains("allow-cross-slot-keys"),
            reelq_queue::keys::READ_THE_HOME.contains(&name.as_str()),
            "{name}: a script that reaches the home's slot itself is one of keys::READ_THE_HOME \
             and carries allow-cross-slot-keys; no other does"
        );
    }
    assert!(scripts >= 18, "found {scripts} scripts");
}

/// The entry points ARCHITECTURE.md names exist as it names them: each `reelq_<crate>::path`
/// in its "Entry points" section is a public item of that crate (re-exported under that
/// name, or `Type::method`), and one written with its parameters (`run(config, listeners,
/// shutdown)`) is a public function taking exactly those, in that order.
#[test]
fn the_entry_points_architecture_names_exist_with_their_signatures() {
    let architecture = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let section = architecture
        .split("## Entry points")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("an Entry points section");
    let section = section.replace('\n', " ");
    let mut checked = 0;
    for quoted in section.split('`').skip(1).step_by(2) {
        let quoted: String = quoted.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some((krate, path)) = quoted
            .strip_prefix("reelq_")
            .and_then(|rest| rest.split_once("::"))
        else {
            continue;
        };
        let mut files = Vec::new();
        rust_files(
            &workspace().join(format!("crates/reelq-{krate}/src")),
            &mut files,
        );
        let source: String = files
            .iter()
            .map(|file| std::fs::read_to_string(file).unwrap())
            .collect();
        let (item, params) = match path.split_once('(') {
            Some((item, params)) => (item, Some(params.trim_end_matches(')'))),
            None => (path, None),
        };
        let name = item.rsplit("::").next().unwrap();
        let public = [
            format!("pub fn {name}("),
            format!("pub async fn {name}("),
            format!("pub struct {name}"),
            format!("as {name}}}"),
            format!("as {name},"),
        ];
        assert!(
            public.iter().any(|form| source.contains(form.as_str())),
            "ARCHITECTURE.md names {quoted}, which reelq-{krate} does not have"
        );
        if let Some(params) = params {
            let wanted: Vec<&str> = params.split(", ").collect();
            let signature = source
                .split(&format!("pub async fn {name}("))
                .nth(1)
                .or_else(|| source.split(&format!("pub fn {name}(")).nth(1))
                .and_then(|rest| rest.split(')').next())
                .expect("the function's parameters");
            let names: Vec<&str> = signature
                .split(',')
                .filter_map(|param| param.split(':').next())
                .map(str::trim)
                .filter(|param| !param.is_empty())
                .collect();
            assert_eq!(names, wanted, "ARCHITECTURE.md writes {quoted}");
        }
        checked += 1;
    }
    assert!(checked >= 5, "checked {checked} entry points");
}

/// Every key the ledger builds is one of the home's or one of a partition's
/// (`reelq_queue::keys`), built as such: `home ..` or `prefix ..` in a script,
/// `home_key` or `key` in Rust; and every key of the ledger's key table is placed.
#[test]
fn every_ledger_key_is_the_homes_or_a_partitions_and_built_as_one() {
    use reelq_queue::keys::{EVERY_SLOT, HOME, PARTITION};
    for name in HOME.iter().chain(PARTITION) {
        let lists = [HOME, PARTITION, EVERY_SLOT];
        let n = lists.iter().filter(|list| list.contains(name)).count();
        assert_eq!(n, 1, "`{name}` is in {n} lists of keys.rs");
    }
    let home: Vec<&str> = HOME.iter().chain(EVERY_SLOT).copied().collect();
    let partition: Vec<&str> = PARTITION.iter().chain(EVERY_SLOT).copied().collect();
    let src = workspace().join("crates/reelq-queue/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for entry in std::fs::read_dir(src.join("scripts")).unwrap() {
        files.push(entry.unwrap().path());
    }
    // (how a key is built, the list it must be in)
    let builders: [(&str, &[&str]); 8] = [
        ("home .. '", &home),
        ("prefix .. '", &partition),
        ("home_key(\"", &home),
        ("home_key(format!(\"", &home),
        ("self.key(\"", &partition),
        ("self.key(format!(\"", &partition),
        // Keys Rust builds from the prefix itself (the slot move, the history mark, the
        // layout read before the ledger is made).
        ("{prefix}", &partition),
        ("{home}", &home),
    ];
    let mut found = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (builder, list) in builders {
            for rest in text.split(builder).skip(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if name.is_empty() && builder == "{prefix}" {
                    continue; // the prefix itself (`{prefix}:` in prose), no key
                }
                found += 1;
                assert!(
                    list.contains(&name.as_str()),
                    "{}: `{builder}{name}` builds a key that is not in that list of keys.rs",
                    path.display()
                );
            }
        }
    }
    assert!(found > 80, "found {found} keys built");
    let tables = ["ledger.rs", "ledger/archive.rs"]
        .map(|file| std::fs::read_to_string(src.join(file)).unwrap())
        .concat();
    for row in tables.lines().filter(|line| line.starts_with("//! | `P ")) {
        for key in row.split("`P ").skip(1) {
            let name: String = key
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                home.contains(&name.as_str()) || partition.contains(&name.as_str()),
                "the key table's `P {name}` is placed in no list of keys.rs"
            );
        }
    }
}
