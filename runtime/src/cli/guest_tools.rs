//! `wasmraid algo wit | bindings | componentize`: what a layout author needs
//! besides a compiler, so no other tool has to be installed to write a layout
//! in C or Zig (see docs/tutorials/).

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use wasmraid_guest_build::tooling::{self, Producers};

#[derive(Clone, Copy, ValueEnum)]
pub enum BindingLanguage {
    /// layout.h, layout.c and layout_component_type.o (wit-bindgen's C generator); also for Zig.
    C,
}

#[derive(Args)]
pub struct WitArgs {
    /// Write `layout.wit` into this folder instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct BindingsArgs {
    /// The language to generate bindings for.
    pub language: BindingLanguage,
    /// The folder to write them into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ComponentizeArgs {
    /// A core module built against the bindings, or a component.
    pub input: PathBuf,
    /// The component to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The source language to record in the producers section, NAME or NAME=VERSION (e.g. Zig=0.17.1).
    #[arg(long, value_name = "NAME[=VERSION]")]
    pub language: Option<String>,
    /// The toolchain to record in the producers section, NAME or NAME=VERSION (e.g. componentize-py=0.25.1).
    #[arg(long, value_name = "NAME[=VERSION]")]
    pub sdk: Option<String>,
}

pub fn wit(args: WitArgs) -> anyhow::Result<()> {
    match args.out {
        None => print!("{}", tooling::LAYOUT_WIT),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("layout.wit");
            std::fs::write(&path, tooling::LAYOUT_WIT).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

pub fn bindings(args: BindingsArgs) -> anyhow::Result<()> {
    match args.language {
        BindingLanguage::C => {
            for path in tooling::c_bindings(&args.out)? {
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn name_version(text: &str) -> (String, String) {
    match text.split_once('=') {
        Some((name, version)) => (name.trim().to_string(), version.trim().to_string()),
        None => (text.trim().to_string(), String::new()),
    }
}

pub fn componentize(args: ComponentizeArgs) -> anyhow::Result<()> {
    let input = std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let producers = Producers { language: args.language.as_deref().map(name_version), sdk: args.sdk.as_deref().map(name_version) };
    let component = tooling::componentize(&input, &producers).with_context(|| args.input.display().to_string())?;
    std::fs::write(&args.output, &component).with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} ({} bytes)", args.output.display(), component.len());
    Ok(())
}
