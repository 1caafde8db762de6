#!/usr/bin/env bash
# Install wasmraid: the binary, a man page per command and the shell
# completions (all generated from the program itself), the systemd unit
# template wasmraid@.service and an example config file.
#
#   scripts/install.sh [PREFIX]     (default /usr/local; DESTDIR is honoured;
#                                    WASMRAID_BIN=PATH installs that binary
#                                    instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
root="${DESTDIR:-}$prefix"
bin="${WASMRAID_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -p wasmraid
    bin=target/release/wasmraid
fi
install -D -m 0755 "$bin" "$root/bin/wasmraid"
man_dir="$root/share/man/man1"
mkdir -p "$man_dir"
"$bin" man "$man_dir"
install -d "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
"$bin" completions bash > "$root/share/bash-completion/completions/wasmraid"
"$bin" completions zsh > "$root/share/zsh/site-functions/_wasmraid"
"$bin" completions fish > "$root/share/fish/vendor_completions.d/wasmraid.fish"
# The unit names the binary by its installed path.
unit_dir="$root/lib/systemd/system"
install -d "$unit_dir"
sed "s|/usr/local/bin/wasmraid|$prefix/bin/wasmraid|g" systemd/wasmraid@.service > "$unit_dir/wasmraid@.service"
# An example config file (the real one is /etc/wasmraid/wasmraid.conf).
install -D -m 0644 docs/wasmraid.conf.example "$root/share/doc/wasmraid/wasmraid.conf.example"
echo "installed wasmraid into $root (man wasmraid; completions for bash, zsh and fish)"
