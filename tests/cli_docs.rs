//! Man pages and completions, generated from the clap definitions: a page
//! for every command `--help` lists (and every subcommand of those), each
//! rendered by `man -l`; a bash completion script bash accepts; and the
//! install script putting them where man and bash look.

use std::process::Command;
use wasmraid_tests::{require, run, wasmraid_bin};

/// The commands a `--help` lists (the lines under "Commands:").
fn commands(words: &[&str]) -> Vec<String> {
    let out = Command::new(wasmraid_bin()).args(words).arg("--help").output().expect("run wasmraid --help");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn man_shows_a_page_for_every_command() {
    require("man");
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(Command::new(wasmraid_bin()).arg("man").arg(dir.path()));
    assert!(ok, "{text}");
    let mut pages = vec![("wasmraid".to_string(), "wasmraid".to_string())];
    for c in commands(&[]) {
        pages.push((format!("wasmraid-{c}"), format!("wasmraid {c}")));
        for sub in commands(&[&c]) {
            pages.push((format!("wasmraid-{c}-{sub}"), format!("wasmraid {c} {sub}")));
        }
    }
    assert!(pages.len() > 25, "the commands were found: {pages:?}");
    for (page, usage) in &pages {
        let path = dir.path().join(format!("{page}.1"));
        assert!(path.exists(), "no man page {} for `{usage}`", path.display());
        let out = Command::new("man").args(["-l", "-P", "cat"]).arg(&path).env("MANWIDTH", "100").output().expect("run man");
        // man justifies lines, widening the spaces between words.
        let shown = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            out.status.success() && shown.contains("NAME") && shown.contains("SYNOPSIS") && shown.contains(usage.as_str()),
            "man -l {}:\n{shown}",
            path.display()
        );
    }
}

#[test]
fn bash_completion_parses_and_knows_the_commands() {
    require("bash");
    let out = Command::new(wasmraid_bin()).args(["completions", "bash"]).output().expect("run wasmraid completions");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    for c in ["serve", "assemble", "status", "reload", "leg"] {
        assert!(script.contains(c), "the bash completion knows {c}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmraid.bash");
    std::fs::write(&path, &script).unwrap();
    let (ok, text) = run(Command::new("bash").arg("-n").arg(&path));
    assert!(ok, "bash -n on the completion script: {text}");
    for shell in ["zsh", "fish"] {
        let out = Command::new(wasmraid_bin()).args(["completions", shell]).output().expect("run wasmraid completions");
        assert!(out.status.success() && !out.stdout.is_empty(), "completions {shell}");
    }
}

#[test]
fn install_script_puts_binary_pages_and_completions_in_place() {
    require("man");
    let dest = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (ok, text) = run(Command::new(root.join("scripts/install.sh")).arg("/usr").env("DESTDIR", dest.path()).env("WASMRAID_BIN", wasmraid_bin()));
    assert!(ok, "{text}");
    let usr = dest.path().join("usr");
    assert!(usr.join("bin/wasmraid").exists());
    assert!(usr.join("share/bash-completion/completions/wasmraid").exists());
    assert!(usr.join("share/zsh/site-functions/_wasmraid").exists());
    assert!(usr.join("share/fish/vendor_completions.d/wasmraid.fish").exists());
    let unit = std::fs::read_to_string(usr.join("lib/systemd/system/wasmraid@.service")).expect("the unit template");
    assert!(unit.contains("Type=notify") && unit.contains("ExecStart=/usr/bin/wasmraid assemble %i"), "{unit}");
    // man finds the page by name under the installed tree.
    let out = Command::new("man").args(["-P", "cat", "-M"]).arg(usr.join("share/man")).arg("wasmraid-serve").output().expect("run man");
    let shown = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.status.success() && shown.contains("wasmraid serve"), "{shown}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn systemd_accepts_the_unit_template() {
    require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("systemd/wasmraid@.service")).unwrap();
    // Pointed at this build's binary, as install.sh points it at its own.
    let unit = unit.replace("/usr/local/bin/wasmraid", &wasmraid_bin().display().to_string());
    std::fs::write(dir.path().join("wasmraid@.service"), unit).unwrap();
    let (ok, text) = run(Command::new("systemd-analyze").args(["verify", "--man=no", "./wasmraid@data.service"]).current_dir(dir.path()));
    assert!(ok && text.trim().is_empty(), "systemd-analyze verify: {text}");
}
