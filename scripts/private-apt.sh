# Sourced by scripts/setup.sh and tests/vm/run.sh: read and fetch packages
# of another Debian suite (bookworm-backports, trixie, trixie-backports)
# without changing the host's apt sources, lists or installed packages.
# shellcheck shell=bash

# A private apt configuration in $1 for Debian suite $2 (main, amd64), on
# the archive the host uses: sets `uri` and the options `o` that make
# apt-get and apt-cache use it alone (Dir::State::status=/dev/null: what
# the host has installed plays no part). Nothing is ever installed by it.
private_apt() {
    local apt_dir=$1 suite=$2 keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || { echo "private_apt: no $keyring (package debian-archive-keyring): cannot check $suite's signature" >&2; return 1; }
    uri=$(apt-get indextargets --format '$(REPO_URI) $(LABEL) $(TARGET_OF)' 2>/dev/null | awk '$2 == "Debian" && $3 == "deb" { print $1; exit }' || true)
    uri=${uri:-http://deb.debian.org/debian/}
    rm -rf "$apt_dir" && mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nArchitectures: amd64\nSigned-By: %s\n' "$uri" "$suite" "$keyring" \
        > "$apt_dir/sources.list.d/$suite.sources"
    o=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources.list.d" -o Dir::State::Lists="$apt_dir/lists"
       -o Dir::State::status=/dev/null -o Dir::Cache="$apt_dir/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
       -o APT::Sandbox::User=root)
}
