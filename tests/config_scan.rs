//! The config file and boot-time assembly, on the host (over NBD; the VM
//! scenario `reboot-scan` does it over ublk across a reboot):
//! `assemble --scan` brings up every array the file names, each in a
//! daemon of its own found by uuid among the places it names;
//! `detail --scan` prints entries that bring the same arrays back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wasmraid::config::Config;
use wasmraid_tests::wasmraid_bin;

/// Stops the daemons `assemble --scan` started (they outlive it by design).
struct Daemons {
    run_dir: PathBuf,
    names: Vec<&'static str>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new(wasmraid_bin()).args(["stop", n, "--run-dir"]).arg(&self.run_dir).output();
        }
    }
}

fn wasmraid(args: &[&str], run_dir: &Path) -> Output {
    Command::new(wasmraid_bin()).arg("--no-cache").args(args).arg("--run-dir").arg(run_dir).output().expect("run wasmraid")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn create(name: &str, layout: &str, legs: &[PathBuf]) -> String {
    let list: Vec<String> = legs.iter().map(|p| p.display().to_string()).collect();
    let out = Command::new(wasmraid_bin())
        .args(["--no-cache", "create", name, "--layout", layout, "--create-legs", "24M", "--legs", &list.join(",")])
        .output()
        .expect("create");
    assert!(out.status.success(), "create {name}: {}", text(&out));
    // "created NAME (UUID): ..."
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    said.split(['(', ')']).nth(1).expect("a uuid in create's output").to_string()
}

fn qemu_io(uri: &str, command: &str) -> bool {
    Command::new("qemu-io")
        .args(["-f", "raw", "-c", command, uri])
        .output()
        .is_ok_and(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed"))
}

#[test]
fn a_config_file_brings_every_array_up_and_detail_scan_writes_one_that_does_again() {
    let dir = tempfile::tempdir().unwrap();
    let legs = dir.path().join("legs");
    std::fs::create_dir(&legs).unwrap();
    let run_dir = dir.path().join("run");
    let r5: Vec<PathBuf> = (0..3).map(|i| legs.join(format!("r5-{i}"))).collect();
    let r1: Vec<PathBuf> = (0..2).map(|i| legs.join(format!("r1-{i}"))).collect();
    let u5 = create("r5", "raid5", &r5);
    let u1 = create("r1", "raid1", &r1);
    let sock = |n: &str| dir.path().join(format!("{n}.nbd"));
    let uri = |n: &str| format!("nbd+unix:///{n}?socket={}", sock(n).display());
    // The served names differ from the names on the legs: uuids decide.
    let conf = dir.path().join("wasmraid.conf");
    std::fs::write(
        &conf,
        format!(
            "devices = [\"{legs}\"]\n\n[[array]]\nname = \"fast\"\nuuid = \"{u5}\"\nnbd-unix = [\"{s5}\"]\n\n[[array]]\nname = \"safe\"\nuuid = \"{u1}\"\nnbd-unix = [\"{s1}\"]\n",
            legs = legs.display(),
            s5 = sock("fast").display(),
            s1 = sock("safe").display()
        ),
    )
    .unwrap();
    let _daemons = Daemons { run_dir: run_dir.clone(), names: vec!["fast", "safe"] };
    let conf_arg = conf.display().to_string();
    let up = wasmraid(&["assemble", "--scan", "--config", &conf_arg], &run_dir);
    let said = text(&up);
    assert!(up.status.success(), "assemble --scan: {said}");
    assert!(said.contains("fast: served (") && said.contains("safe: served ("), "{said}");
    assert!(qemu_io(&uri("fast"), "write -P 7 0 8M") && qemu_io(&uri("safe"), "write -P 9 1M 4M"), "writes through both");
    // Legs of the other array in the same place are no news in the log.
    let log = std::fs::read_to_string(run_dir.join("fast.log")).unwrap();
    assert!(!log.contains("foreign") && !log.contains("REFUSED"), "{log}");

    let again = wasmraid(&["assemble", "--scan", "--config", &conf_arg], &run_dir);
    assert!(again.status.success() && text(&again).contains("fast: already served"), "{}", text(&again));

    let detail = wasmraid(&["detail", "--scan"], &run_dir);
    assert!(detail.status.success(), "{}", text(&detail));
    let printed = String::from_utf8_lossy(&detail.stdout).to_string();
    let parsed = Config::parse(&printed, "detail --scan").unwrap_or_else(|e| panic!("{e}\n{printed}"));
    let fast = parsed.array("fast", "").unwrap();
    assert_eq!(fast.uuid, u5);
    assert_eq!(fast.nbd_unix, [sock("fast")]);
    assert_eq!(fast.devices, r5.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    assert_eq!(parsed.array("safe", "").unwrap().uuid, u1);

    // Stop both; what detail --scan printed brings them back, data intact.
    for n in ["fast", "safe"] {
        assert!(wasmraid(&["stop", n], &run_dir).status.success());
    }
    let printed_conf = dir.path().join("printed.conf");
    std::fs::write(&printed_conf, &printed).unwrap();
    let back = wasmraid(&["assemble", "--scan", "--config", &printed_conf.display().to_string()], &run_dir);
    assert!(back.status.success(), "{}", text(&back));
    assert!(qemu_io(&uri("fast"), "read -P 7 0 8M") && qemu_io(&uri("safe"), "read -P 9 1M 4M"), "the data came back");
}

#[test]
fn with_the_config_file_serving_flags_belong_in_it_and_bad_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let conf = dir.path().join("wasmraid.conf");
    std::fs::write(&conf, "[[array]]\nname = \"data\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 3\n").unwrap();
    let c = conf.display().to_string();
    let stray = wasmraid(&["assemble", "data", "--scan", "--config", &c, "--nbd", "127.0.0.1:10899", "--direct"], &run_dir);
    let said = text(&stray);
    assert!(!stray.status.success() && said.contains("--direct, --nbd") && said.contains("put"), "{said}");

    let missing = wasmraid(&["assemble", "other", "--scan", "--config", &c], &run_dir);
    assert!(text(&missing).contains("names no array \"other\" (it names: data)"), "{}", text(&missing));

    std::fs::write(&conf, "[[array]]\nname = \"data\"\nuuid = \"00112233445566778899aabbccddeeff\"\nublk-id = 3\nublk = true\n").unwrap();
    let bad = wasmraid(&["assemble", "--scan", "--config", &c], &run_dir);
    assert!(!bad.status.success() && text(&bad).contains("unknown field `ublk`"), "{}", text(&bad));
    assert!(text(&bad).contains(&c), "the error names the file: {}", text(&bad));

    // An array whose legs are nowhere: the daemon's failure is reported
    // with the lines of its log that say why, and the exit status says so.
    let legs = dir.path().join("nothing-here");
    std::fs::create_dir(&legs).unwrap();
    std::fs::write(
        &conf,
        format!(
            "devices = [\"{}\"]\n[[array]]\nname = \"data\"\nuuid = \"00112233445566778899aabbccddeeff\"\nnbd-unix = [\"{}/d.nbd\"]\n",
            legs.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let _daemons = Daemons { run_dir: run_dir.clone(), names: vec!["data"] };
    let none = wasmraid(&["assemble", "--scan", "--config", &c], &run_dir);
    let said = text(&none);
    assert!(
        !none.status.success() && said.contains("data: FAILED") && said.contains("no file or block device to look at in") && said.contains("nothing-here"),
        "{said}"
    );
}
