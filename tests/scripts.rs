//! Every shell script of the project parses: the scripts a user runs
//! (`scripts/`), the VM bed (`tests/vm/run.sh`, `lib.sh`, `init`) and each
//! VM scenario. A scenario only runs inside the VM, minutes into a suite;
//! a syntax error there should fail here, in a second.

use std::path::{Path, PathBuf};
use std::process::Command;
use wasmraid_tests::run;

fn files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file() && keep(p)).collect();
    out.sort();
    out
}

#[test]
fn every_shell_script_parses_with_the_shell_it_runs_under() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let is_sh = |p: &Path| p.extension().is_some_and(|e| e == "sh");
    let mut scripts = files(&root.join("scripts"), is_sh);
    scripts.extend(files(&root.join("tests/vm"), |p| is_sh(p) || p.file_name().is_some_and(|n| n == "init")));
    scripts.extend(files(&root.join("tests/vm/scenarios"), is_sh));
    assert!(scripts.len() > 20, "found the scripts: {scripts:?}");
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        // A bash shebang, or a file bash scripts source (marked for
        // shellcheck), runs under bash; the rest (the init, lib.sh and the
        // scenarios it sources) under the VM's POSIX sh.
        let bash = text.lines().next().is_some_and(|l| l.starts_with("#!") && l.contains("bash")) || text.contains("# shellcheck shell=bash");
        let shell = if bash { "bash" } else { "sh" };
        let (ok, said) = run(Command::new(shell).arg("-n").arg(&script));
        assert!(ok, "{shell} -n {}: {said}", script.display());
    }
}
