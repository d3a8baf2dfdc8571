//! Every config example a user can copy must parse: `config/lagdns.toml`, every
//! `examples/**/*.toml`, and every ```` ```toml ```` block in README.md.
//!
//! A README block fenced as ```` ```toml fragment ```` (a partial config shown for one
//! key) is only checked to be valid TOML; every other `toml` block must be a whole,
//! valid config.

use std::path::{Path, PathBuf};

use lagdns::config::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced block: the line its first content line is on, whether it is a fragment, and
/// its text.
#[derive(Debug, PartialEq)]
struct Block {
    line: usize,
    fragment: bool,
    text: String,
}

/// The ```` ```toml ```` blocks of a Markdown text (also ```` ~~~toml ```` and indented
/// fences), in order.
fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, Block)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
                if let Some(fence) = fence {
                    let info: Vec<&str> = trimmed[fence.len()..].split_whitespace().collect();
                    if info.first() == Some(&"toml") {
                        let fragment = info.contains(&"fragment");
                        open = Some((fence, Block { line: i + 2, fragment, text: String::new() }));
                    } else {
                        // Skip over a non-TOML block so its content is not read as fences.
                        open = Some((fence, Block { line: 0, fragment: true, text: String::new() }));
                    }
                }
            }
            Some((fence, block)) if is_closing(trimmed, fence) => {
                if block.line != 0 {
                    blocks.push(block);
                }
            }
            Some((fence, mut block)) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some((fence, block));
            }
        }
    }
    blocks
}

/// A closing fence: the fence characters alone (at least as many as opened it).
fn is_closing(trimmed: &str, fence: &str) -> bool {
    let c = fence.chars().next().expect("fence");
    trimmed.starts_with(fence) && trimmed.trim_end().chars().all(|x| x == c)
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("read examples/").path();
        if path.is_dir() {
            files.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn shipped_example_config_parses() {
    let path = root().join("config/lagdns.toml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.clusters.is_empty());
}

#[test]
fn every_toml_under_examples_parses() {
    for path in toml_files(&root().join("examples")) {
        if let Err(e) = Config::load(&path) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_toml_block_in_the_readme_parses() {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("README.md must exist and show a config: {}: {e}", path.display()));
    let blocks = toml_blocks(&text);
    assert!(blocks.iter().any(|b| !b.fragment), "README.md has no complete ```toml config block");
    for block in blocks {
        let file = format!("README.md (```toml block from line {})", block.line);
        if block.fragment {
            if let Err(e) = block.text.parse::<toml::Table>() {
                panic!("{file}: not valid TOML: {e}");
            }
        } else if let Err(e) = Config::parse(&block.text, &file) {
            panic!("{e}");
        }
    }
}

#[test]
fn toml_blocks_are_found_with_their_lines() {
    let md = "# Title\n\
              ```toml\n\
              a = 1\n\
              ```\n\
              ```sh\n\
              ```toml\n\
              ```\n\
              text\n\
              ~~~toml fragment\n\
              b = 2\n\
              c = 3\n\
              ~~~\n\
              ```rust\n\
              let x = 1;\n\
              ```\n";
    let want = vec![
        Block { line: 3, fragment: false, text: "a = 1\n".into() },
        Block { line: 10, fragment: true, text: "b = 2\nc = 3\n".into() },
    ];
    assert_eq!(toml_blocks(md), want);
}

#[test]
fn a_broken_readme_block_is_reported_with_its_place() {
    let md = "intro\n```toml\n[[cluster]]\nname = \"main\"\n```\n";
    let block = &toml_blocks(md)[0];
    let file = format!("README.md (```toml block from line {})", block.line);
    let err = Config::parse(&block.text, &file).unwrap_err().to_string();
    assert_eq!(
        err,
        "README.md (```toml block from line 3):1: cluster[main].node: a cluster needs at least one [[cluster.node]], or `patroni` to discover them"
    );
}
