//! The `wasmraid` command.

mod cli;

fn main() -> std::process::ExitCode {
    // A server must die on a fatal error, never unwind: ublk's user recovery
    // keeps the device only when the process really dies.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    cli::main()
}
