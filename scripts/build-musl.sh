#!/usr/bin/env bash
# The Dockerfile's build stage without Docker (no Docker engine runs here or in CI): a static
# x86_64-unknown-linux-musl release build of redrive-operator from exactly the files the
# Dockerfile COPYs, then checks that the binary is static and works.
#
#   scripts/build-musl.sh            prints the binary's path on its last line
#
# Needs: rustup (to add the rust-std component of the musl target, downloaded once by rustup) and
# a musl C compiler for aws-lc-sys: x86_64-linux-musl-gcc from Debian's musl-tools, installed here
# with apt-get when missing and running as root. Target dir: $CARGO_TARGET_DIR or ./target.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
BIN=redrive-operator
PROG=build-musl.sh

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
  exit 1
}

# ---- toolchain ----------------------------------------------------------------------------------
command -v rustup >/dev/null 2>&1 || die "rustup is required to add the $TARGET target"
if ! rustup target list --installed | grep -qx "$TARGET"; then
  log "adding the $TARGET target (rustup downloads its rust-std component)"
  rustup target add "$TARGET" >&2 ||
    die "'rustup target add $TARGET' failed: rustup could not download rust-std for $TARGET (see docs/install.md, 'Container image')"
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing musl-tools (x86_64-linux-musl-gcc, for aws-lc-sys)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools; } >&2 ||
      die "apt-get install musl-tools failed"
  else
    die "x86_64-linux-musl-gcc is missing: install Debian's musl-tools (or another musl cross gcc)"
  fi
fi

# ---- the Docker build context: exactly the COPY sources of the Dockerfile -----------------------
# A fixed directory under the target dir, copied with mtimes kept, so an unchanged tree is not
# rebuilt by the next run.
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
ctx=$target_dir/docker-context
rm -rf "$ctx"
mkdir -p "$ctx"
sources=()
while read -r line; do
  # shellcheck disable=SC2206
  words=($line)
  [[ ${#words[@]} -ge 3 && ${words[0]} == COPY ]] || continue
  [[ ${words[1]} == --from=* ]] && continue
  n=${#words[@]}
  for ((i = 1; i < n - 1; i++)); do
    src=${words[i]%/}
    [[ -e $src ]] || die "the Dockerfile copies '$src', which does not exist"
    mkdir -p "$ctx/$(dirname "$src")"
    cp -Rp "$src" "$ctx/$src"
    sources+=("$src")
  done
done <Dockerfile
((${#sources[@]} > 0)) || die "found no COPY line in the Dockerfile"
# .dockerignore must let every copied path through (it is an allowlist).
for src in "${sources[@]}"; do
  grep -qx "!$src/\{0,1\}" .dockerignore || die ".dockerignore does not allow '$src', which the Dockerfile copies"
done

# ---- build (the Dockerfile's command) -----------------------------------------------------------
log "cargo build --release --locked --target $TARGET --bin $BIN (context: ${sources[*]})"
started=$SECONDS
CARGO_TARGET_DIR=$target_dir cargo build --release --locked --target "$TARGET" --bin "$BIN" \
  --manifest-path "$ctx/Cargo.toml" >&2
out=$target_dir/$TARGET/release/$BIN
[[ -x $out ]] || die "no binary at $out"
log "built in $((SECONDS - started)) s: $out ($(du -h "$out" | cut -f1))"

# ---- checks -------------------------------------------------------------------------------------
# Static: no program interpreter and no shared library, so it runs in distroless/static or scratch.
if command -v readelf >/dev/null 2>&1; then
  if readelf -lW "$out" | grep -q 'Requesting program interpreter'; then
    die "$out has a program interpreter: not static"
  fi
  if readelf -dW "$out" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$out needs shared libraries: $(readelf -dW "$out" | grep '(NEEDED)' | tr -s ' ')"
  fi
else
  die "readelf (binutils) is needed to check that the binary is static"
fi
# Runs with an empty environment, as in the image, and embeds the generated CRD.
version=$(env -i "$out" --version) || die "$out --version failed"
want="$BIN $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
[[ $version == "$want" ]] || die "$out --version printed '$version', expected '$want'"
env -i "$out" crd | cmp -s - crds/redrivepolicies.redrive.dev.yaml ||
  die "'$out crd' differs from crds/redrivepolicies.redrive.dev.yaml"
env -i "$out" run --help >/dev/null || die "$out run --help failed"
log "static, runs: $version"
echo "$out"
