#!/usr/bin/env bash
# moto (a third-party AWS emulator, from PyPI) as the real SQS / EventBridge of the event tests
# (issue 15; api-facts §5.4): `moto_server` serves every service on one port, SQS with the JSON
# protocol that aws-sdk-sqs speaks, EventBridge PutRule / PutTargets / PutEvents with SQS targets.
#
#   scripts/moto.sh install       install (once) the pinned moto[server] into a venv; prints moto_server's path
#   scripts/moto.sh path          print moto_server's path (no install; fails if not installed)
#   scripts/moto.sh server PORT   exec moto_server on 127.0.0.1:PORT in the foreground
#
# Needs: python3 (>= 3.9) with the venv module (Debian: python3-venv), flock (util-linux).
# Cache: ${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}/moto-<version>/ (a venv, ~320 MB: moto[server]
# pulls in boto3, cfn-lint, sympy, ...).
# Cost: the first install downloads ~60 wheels from PyPI, ~35 s here; afterwards `install` only
# checks the cached venv (~10 ms). moto_server starts in ~1 s (~50 MB RSS, more once services load).
set -euo pipefail

# ---- pinned versions ----------------------------------------------------------------------------
# moto 5.2.5: the newest 5.x that pip resolved here (late 2026). The constraints below pin what it
# pulled in then, so a later release of a dependency cannot change the tests' SQS / EventBridge.
MOTO_VERSION=5.2.5

CACHE_DIR=${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}
VENV=$CACHE_DIR/moto-$MOTO_VERSION
MOTO_SERVER=$VENV/bin/moto_server

PROG=moto.sh
SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
  exit 1
}

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"
}

# Transitive pins (pip freeze of the venv after a clean install of moto[server]==MOTO_VERSION).
constraints() {
  cat <<'EOF'
annotated-types==0.8.0
antlr4-python3-runtime==4.13.2
attrs==26.1.0
aws-xray-sdk==2.15.0
blinker==1.9.0
boto3==1.44.8
botocore==1.44.8
certifi==2026.10.19.post1
cffi==2.1.1
cfn-lint==1.58.0
charset-normalizer==3.5.3
click==8.5.1
cryptography==50.0.2
docker==7.2.0
Flask==3.1.3
flask-cors==6.0.5
graphql-core==3.3.2
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
joserfc==1.8.0
jsonpatch==1.48
jsonpath-ng==1.16.0
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-path==0.5.0
jsonschema-specifications==2025.9.1
lazy-object-proxy==1.13.0
MarkupSafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
openapi-schema-validator==0.9.0
openapi-spec-validator==0.9.0
pathable==0.6.0
py-partiql-parser==0.6.3
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
PyYAML==6.0.4
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
responses==0.26.3
rfc3339-validator==0.1.4
rpds-py==2026.9.1
s3transfer==0.19.3
six==1.17.0
sympy==1.14.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==2.5.2
xmltodict==1.0.4
EOF
}

# True if the cached venv is complete: the marker is written last, after a smoke test.
installed() { [[ -x $MOTO_SERVER && -f $VENV/.installed ]]; }

cmd_install() {
  mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR"
  need_cmd flock "install util-linux"
  exec 9>"$CACHE_DIR/moto.lock" || die "cannot open $CACHE_DIR/moto.lock"
  if ! flock -n 9; then
    log "waiting for another '$PROG install' to finish (lock $CACHE_DIR/moto.lock)"
    flock 9 || die "could not take the lock $CACHE_DIR/moto.lock"
  fi
  if ! installed; then
    need_cmd python3 "install Python 3 (Debian packages python3 and python3-venv)"
    local start=$SECONDS
    log "installing moto[server]==$MOTO_VERSION into $VENV (PyPI; ~30-60 s, once)"
    # Build next to the final place (same filesystem: mv is atomic) so a failed or interrupted
    # install never leaves a half venv where `path` would find it.
    rm -rf "$VENV" "$CACHE_DIR"/moto-build.*
    local dir
    dir=$(mktemp -d "$CACHE_DIR/moto-build.XXXXXX")
    local cfile=$dir/constraints.txt
    constraints >"$cfile"
    python3 -m venv "$VENV" ||
      die "'python3 -m venv $VENV' failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --constraint "$cfile" "moto[server]==$MOTO_VERSION" || {
      rm -rf "$VENV" "$dir"
      die "pip could not install moto[server]==$MOTO_VERSION from PyPI (see pip's output above)"
    }
    rm -rf "$dir"
    [[ -x $MOTO_SERVER ]] || die "$MOTO_SERVER is missing after pip install"
    "$MOTO_SERVER" --help >/dev/null 2>&1 || die "the freshly installed $MOTO_SERVER does not run"
    touch "$VENV/.installed"
    log "installed moto $MOTO_VERSION in $((SECONDS - start))s"
  fi
  flock -u 9
  echo "$MOTO_SERVER"
}

cmd_path() {
  installed || die "moto $MOTO_VERSION is not installed: run '$SCRIPT_PATH install' first"
  echo "$MOTO_SERVER"
}

cmd_server() { # PORT
  [[ $# -eq 1 ]] || die "usage: $PROG server PORT"
  installed || die "moto $MOTO_VERSION is not installed: run '$SCRIPT_PATH install' first"
  exec "$MOTO_SERVER" -H 127.0.0.1 -p "$1"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
  install) cmd_install "$@" ;;
  path) cmd_path "$@" ;;
  server) cmd_server "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//' >&2
    [[ -z $cmd ]] && exit 2
    die "unknown command '$cmd'"
    ;;
  esac
}

main "$@"
