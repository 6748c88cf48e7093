//! `stowage completion SHELL` and `stowage man --output DIR` against the real shells and man:
//! bash completes subcommands and flags through the generated `_stowage`, fish through
//! `complete -C`, zsh loads the script under compinit, and every page renders with groff
//! without a warning and lists every long flag `--help` shows for its command.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The binary under test, with no global flags.
fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
}

/// `stowage completion SHELL` written to DIR/FILE.
fn script(dir: &Path, shell: &str, file: &str) -> std::path::PathBuf {
    let out = run(bin().args(["completion", shell]));
    assert!(!out.stdout.is_empty(), "{shell}: empty script");
    let path = dir.join(file);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// The subcommand names of a `--help` text's `Commands:` section (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags of a `--help` text (`  -q, --quiet`, `      --policy <PATH>`).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t
                .strip_prefix('-')
                .and_then(|r| r.get(1..))
                .and_then(|r| r.strip_prefix(", "))
                .unwrap_or(t);
            let flag: String = t
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            // `--verbose...`: clap marks a repeatable flag with dots.
            Some(format!("--{}", flag.trim_end_matches('.')))
        })
        .collect()
}

/// Every command path (`[]`, `["copy"]`, `["image", "cmd", "list"]`, …) and its `--help`.
fn command_tree() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let help = String::from_utf8(run(bin().args(&path).arg("--help")).stdout).unwrap();
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            pending.push(p);
        }
        out.push((path, help));
    }
    out
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let test = "bash_completes_subcommands_and_flags";
    if !oracle("bash", test) {
        return;
    }
    let tmp = tempdir();
    let file = script(tmp.path(), "bash", "stowage.bash");
    // Load it as `source <(stowage completion bash)` would, then run the completion function
    // as bash does on TAB: COMP_WORDS/COMP_CWORD set, called with the command, the word and
    // the previous word.
    let complete = |words: &[&str]| -> Vec<String> {
        let cword = words.len() - 1;
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let prog = format!(
            "source '{}' && complete -p stowage && COMP_WORDS=({}) && COMP_CWORD={cword} && \
             _stowage stowage '{}' '{}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            quoted.join(" "),
            words[cword],
            words[cword.saturating_sub(1)],
        );
        let out = run(cmd("bash", ["--norc", "-c", &prog]));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let spec = lines.next().unwrap_or_default();
        assert!(
            spec.contains("-F _stowage") && spec.ends_with(" stowage"),
            "{spec}"
        );
        lines.map(str::to_string).collect()
    };
    assert_eq!(complete(&["stowage", "ima"]), ["image", "images"]);
    assert_eq!(complete(&["stowage", "image", "cmd", "li"]), ["list"]);
    assert_eq!(
        complete(&["stowage", "image", "cmd", "list", "--no"]),
        ["--noheading", "--no-trunc"]
    );
    assert_eq!(complete(&["stowage", "completion", "f"]), ["fish"]);
    // And through process substitution, the documented way.
    let prog = format!(
        "source <('{}' completion bash); complete -p stowage",
        env!("CARGO_BIN_EXE_stowage")
    );
    let out = run(cmd("bash", ["--norc", "-c", &prog]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-F _stowage"));
}

#[test]
fn fish_and_zsh_load_the_scripts() {
    let test = "fish_and_zsh_load_the_scripts";
    let tmp = tempdir();
    if oracle("fish", test) {
        let file = script(tmp.path(), "fish", "stowage.fish");
        run(cmd("fish", ["-n"]).arg(&file));
        let prog = format!(
            "source '{}'; complete -C 'stowage image cmd '",
            file.display()
        );
        let out = run(cmd("fish", ["--no-config", "-c", &prog]));
        let names: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect();
        for want in [
            "list", "inspect", "exists", "tag", "untag", "rm", "prune", "pull", "build", "push",
        ] {
            assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
        }
    }
    if oracle("zsh", test) {
        let file = script(tmp.path(), "zsh", "_stowage");
        run(cmd("zsh", ["-n"]).arg(&file));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("#compdef stowage"), "{}", &text[..40]);
        // Under compinit the script defines _stowage and registers it for stowage.
        let prog = format!(
            "autoload -Uz compinit && compinit -u -D -d '{}/zcompdump' && source '{}' && \
             whence -w _stowage && print -r -- $_comps[stowage]",
            tmp.path().display(),
            file.display()
        );
        let out = run(cmd("zsh", ["-f", "-c", &prog]));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "_stowage: function\n_stowage\n"
        );
    }
}

#[test]
fn man_pages_render_and_list_every_option() {
    let test = "man_pages_render_and_list_every_option";
    if !oracle("groff", test) || !oracle("man", test) {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("man/man1");
    let out = run(bin().args(["man", "--output"]).arg(&dir));
    let tree = command_tree();
    assert!(tree.len() > 20, "{} commands", tree.len());
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), tree.len(), "{listed}");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = tree
        .iter()
        .map(|(path, _)| {
            let mut name = String::from("stowage");
            for p in path {
                name.push('-');
                name.push_str(p);
            }
            format!("{name}.1")
        })
        .collect();
    want.sort();
    assert_eq!(files, want, "one page per command");
    for (path, help) in &tree {
        let name = std::iter::once("stowage".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = dir.join(format!("{name}.1"));
        // groff itself, every warning on: none.
        let out = run(cmd("groff", ["-man", "-Tutf8", "-ww"]).arg(&page));
        assert!(
            out.stderr.is_empty(),
            "{name}: groff warns: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // What `man -l` shows has the name, the description and every flag of `--help`.
        let out = run(cmd("man", ["-l"]).arg(&page).env("MANWIDTH", "1000"));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("NAME") && text.contains(&name),
            "{name}: {text}"
        );
        let flags = long_flags(help);
        assert!(flags.contains(&"--help".to_string()), "{name}: {flags:?}");
        for flag in flags {
            assert!(text.contains(&flag), "{name}: {flag} missing from the page");
        }
        if !path.is_empty() {
            let about = help.lines().next().unwrap().trim_end_matches('.');
            assert!(
                text.contains(&about[..about.len().min(30)]),
                "{name}: no {about:?}"
            );
        }
    }
}
