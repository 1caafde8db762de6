//! Man pages and shell completions, generated from the clap definitions
//! themselves, so they cannot drift from what the program accepts.

use clap::CommandFactory;
use std::path::Path;

/// Write `wasmraid.1` and one `wasmraid-VERB.1` per command (and per
/// subcommand of one, `wasmraid-leg-fail.1`) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<std::process::ExitCode> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = 0;
    write_page(dir, super::Cli::command(), "wasmraid", "wasmraid", &mut written)?;
    println!("wrote {written} man pages into {}", dir.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `name` is the page's (wasmraid-leg-re-add, as man finds it), `usage`
/// the command line's (wasmraid leg re-add).
fn write_page(dir: &Path, cmd: clap::Command, name: &str, usage: &str, written: &mut usize) -> anyhow::Result<()> {
    let cmd = cmd.name(name.to_string()).bin_name(usage.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(&path, page).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(dir, sub.clone(), &format!("{name}-{}", sub.get_name()), &format!("{usage} {}", sub.get_name()), written)?;
    }
    Ok(())
}

/// Print the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<std::process::ExitCode> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "wasmraid", &mut std::io::stdout());
    Ok(std::process::ExitCode::SUCCESS)
}
