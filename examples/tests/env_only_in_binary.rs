//! "Only the binary speaks of environment variables" (ARCHITECTURE.md, "Configuration"): no
//! library crate reads the process environment, except `Config::from_env` in governance-core,
//! the documented shortcut for embedders.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_crates_read_no_environment_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in [
        "governance-core",
        "governance-redis",
        "governance-sqlite",
        "governance-openrouter",
        "governance-http",
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has sources");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue; // docs may show an embedder reading its environment
                }
                if ["std::env::var", "env::var(", "env::vars(", "var_os("]
                    .iter()
                    .any(|p| code.contains(p))
                {
                    found.push(format!("{}:{}: {code}", file.display(), n + 1));
                }
            }
        }
    }
    let allowed = |f: &String| f.contains("governance-core/src/config.rs");
    assert_eq!(
        found.iter().filter(|f| allowed(f)).count(),
        1,
        "Config::from_env reads the environment: {found:#?}"
    );
    let others: Vec<&String> = found.iter().filter(|f| !allowed(f)).collect();
    assert!(
        others.is_empty(),
        "environment reads in libraries: {others:#?}"
    );
}
