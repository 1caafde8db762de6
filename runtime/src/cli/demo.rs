//! `wasmraid demo`: prove and draw built-in layouts, then serve a raid6
//! over six sparse files through NBD, write and verify data with a real
//! client (qemu-io), fail two legs, verify again, and show the status.

use super::SandboxArgs;
use super::algo::load;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;
use wasmraid::control::Request;
use wasmraid::device::BlockDevice;
use wasmraid::device::file::{FileLeg, OpenFlags};
use wasmraid::frontend::nbd::Listen;
use wasmraid::layout::Geometry;
use wasmraid::layout::draw::Grid;
use wasmraid::layout::proven::ProvenLayout;
use wasmraid::table::bind::BindContext;
use wasmraid::table::{Table, parse};
use wasmraid::units::format_size;

const SHOWCASE: &[(&str, u32, &str, u64)] =
    &[("raid5", 4, "left-symmetric", 4), ("raid10", 3, "n2", 4), ("pyramid", 14, "elegant", 3), ("draid", 8, "p=2,s=1,seed=42", 3)];

pub fn run(sandbox_args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    let sandbox = sandbox_args.sandbox()?;
    println!("# 1. Built-in layouts, proven and drawn\n");
    for &(name, legs, args, rows) in SHOWCASE {
        let (origin, loaded) = load(name, &sandbox)?;
        let g = Geometry { chunk_sectors: 128, leg_chunks: vec![16384; legs as usize], args: args.into() };
        let layout = ProvenLayout::prove(loaded.clone(), g).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let r = &layout.report;
        println!(
            "{name} {args:?} on {legs} legs of 1 GiB: {} usable, proven in {:.1} ms ({} chunks, survives {} failed legs)",
            format_size(layout.capacity_bytes()),
            r.elapsed.as_secs_f64() * 1e3,
            r.chunks,
            r.fault_tolerance,
        );
        print!("{}", Grid::of(&layout, 0..rows, 1 << 16)?.text());
        println!();
    }
    serve_demo(&sandbox)?;
    Ok(ExitCode::SUCCESS)
}

fn qemu_io(uri: &str, commands: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    let out = cmd.arg(uri).output().context("running qemu-io (install qemu-utils: ./scripts/setup.sh)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| l.starts_with("wrote") || l.starts_with("read")) {
        println!("  qemu-io: {line}");
    }
    if !out.status.success() || text.contains("failed") || text.contains("Pattern verification") {
        bail!("qemu-io reported a failure:\n{text}");
    }
    Ok(())
}

fn serve_demo(sandbox: &Arc<wasmraid::sandbox::Sandbox>) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("wasmraid-demo").tempdir()?;
    let legs: Vec<String> = (0..6).map(|i| dir.path().join(format!("leg{i}.img")).display().to_string()).collect();
    for leg in &legs {
        FileLeg::create(Path::new(leg), 64 << 20)?;
    }
    println!("# 2. raid6 over six sparse 64 MiB files in {}, served over NBD\n", dir.path().display());
    let line = |sectors: u64| {
        let pairs: Vec<String> = legs.iter().map(|l| format!("{l} 0")).collect();
        format!("0 {sectors} wasm raid6 128 6 {}", pairs.join(" "))
    };
    let probe = Table::bind(&parse::parse(&line(1))?, BindContext::new("demo", sandbox.clone(), OpenFlags::default()))?;
    let sectors = probe.arrays()[0].layout().capacity_bytes() / 512;
    drop(probe);
    let table = Arc::new(Table::bind(&parse::parse(&line(sectors))?, BindContext::new("demo", sandbox.clone(), OpenFlags::default()))?);
    println!("table: {}\n", table.text().replace(&format!("{}/", dir.path().display()), ""));
    print!("{}", Grid::of(&table.arrays()[0].layout(), 0..6, 1 << 16)?.text());
    println!();

    let socket = dir.path().join("nbd.sock");
    let run_dir = dir.path().join("run");
    let uri = format!("nbd+unix:///demo?socket={}", socket.display());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = {
        let (table, sandbox, socket, run_dir) = (table.clone(), sandbox.clone(), socket.clone(), run_dir.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(wasmraid::serve::run(
                "demo".into(),
                table,
                sandbox,
                wasmraid::serve::Frontends { nbd: vec![Listen::Unix(socket)], ..Default::default() },
                run_dir,
                |served, sock| {
                    println!("serving {} on {} (control {})", format_size(served.table.size()), served.listening.join(", "), sock.display());
                    let _ = ready_tx.send(());
                },
            ))?;
            Ok(())
        })
    };
    ready_rx.recv_timeout(Duration::from_secs(30)).context("the demo server did not start")?;
    let ctl = |request: Request| super::control::call(&Some(run_dir.clone()), "demo", request, Duration::from_secs(30));
    let result = (|| -> anyhow::Result<()> {
        println!("\n# 3. Write 24 MiB of patterns with qemu-io, read them back");
        let write: Vec<String> = (0..3).map(|i| format!("write -P 0x{:02x} {}M 8M", 0x51 + i, i * 8)).collect();
        let verify: Vec<String> = (0..3).map(|i| format!("read -P 0x{:02x} {}M 8M", 0x51 + i, i * 8)).collect();
        qemu_io(&uri, &write)?;
        qemu_io(&uri, &verify)?;
        for leg in [2usize, 4] {
            let r = ctl(Request::LegFail { array: None, leg })?;
            println!("\n# failed leg {leg}: health {}; verifying again", r.result["health"].as_str().unwrap_or("?"));
            qemu_io(&uri, &verify)?;
        }
        println!("\n# 4. Status");
        super::control::status(&Some(run_dir.clone()), "demo", false)?;
        Ok(())
    })();
    let _ = ctl(Request::Stop);
    server.join().map_err(|_| anyhow::anyhow!("the demo server panicked"))??;
    result?;
    println!("\ndemo passed: data written through NBD read back intact with two of six legs failed");
    Ok(())
}
