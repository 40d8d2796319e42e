#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver, no kubelet, no controllers) for tests,
# built from source with the Go toolchain and the Go module proxy only. See docs/control-plane.md.
#
#   scripts/control-plane.sh install          build (once) and cache the pinned binaries; prints the bin dir
#   scripts/control-plane.sh paths            print name=path of every pinned binary (no build)
#   scripts/control-plane.sh start DIR        start etcd + kube-apiserver with data in DIR; prints `export KUBECONFIG=...`
#   scripts/control-plane.sh stop DIR         stop what `start DIR` started
#
# Plumbing used by tests/support/cluster.rs (one definition of the flags for humans and tests):
#   scripts/control-plane.sh init DIR ETCD_PORT ETCD_PEER_PORT APISERVER_PORT
#                                             write certificates, keys, token and kubeconfig into DIR
#   scripts/control-plane.sh run-etcd DIR     exec etcd in the foreground
#   scripts/control-plane.sh run-apiserver DIR
#                                             exec kube-apiserver in the foreground
#   (with REDRIVE_CP_WATCH_PID=PID set, run-* also kill their server when process PID is gone)
#
# Needs: bash, go (>= 1.26), flock and openssl (both in the base Debian image), coreutils.
# Cache: ${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}/bin/<name>-<version>.
set -euo pipefail

# ---- pinned versions ----------------------------------------------------------------------------
# Kubernetes 1.33 matches the k8s-openapi `v1_33` feature the crate is built with (the oldest
# Kubernetes the operator supports). etcd 3.6 is the etcd line supported by Kubernetes 1.33+.
K8S_VERSION=v1.33.13
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0

CACHE_DIR=${REDRIVE_CACHE:-$HOME/.cache/redrive-operator}
BIN_DIR=$CACHE_DIR/bin

PROG=control-plane.sh
SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
  exit 1
}

bin_path() { # NAME -> cached path of the pinned binary
  case $1 in
  etcd) echo "$BIN_DIR/etcd-$ETCD_VERSION" ;;
  kube-apiserver) echo "$BIN_DIR/kube-apiserver-$K8S_VERSION" ;;
  kubectl) echo "$BIN_DIR/kubectl-$K8S_VERSION" ;;
  helm) echo "$BIN_DIR/helm-$HELM_VERSION" ;;
  *) die "unknown binary '$1'" ;;
  esac
}

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"
}

# ---- install ------------------------------------------------------------------------------------

check_go() {
  need_cmd go "install the Go toolchain (>= 1.26) first"
  local v
  v=$(go env GOVERSION 2>/dev/null) || die "'go env GOVERSION' failed; is the Go toolchain working?"
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%[.a-z]*}
  if ((major < 1 || (major == 1 && minor < 26))); then
    die "Go $v is too old: building etcd $ETCD_VERSION needs Go >= 1.26"
  fi
}

# Run the go command with settings that do not depend on the caller's environment.
gocmd() {
  env CGO_ENABLED=0 GOFLAGS= GOWORK=off GO111MODULE=on go "$@"
}

# `go build` in a throwaway main module: -mod=mod records go.sum entries as it resolves.
gobuild() {
  gocmd build -mod=mod -buildvcs=false -trimpath "$@"
}

# Print the path of a module's go.mod file in the module cache, downloading the module if needed.
module_gomod() { # MODULE VERSION
  local json
  json=$(cd / && gocmd mod download -json "$1@$2") || die "could not download Go module $1@$2 from the module proxy: $json"
  local gomod
  gomod=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -n $gomod && -f $gomod ]] || die "no go.mod for $1@$2 in 'go mod download' output: $json"
  echo "$gomod"
}

# Print the `go` line of a go.mod file.
gomod_go_line() { sed -n 's/^go \([0-9.]*\)$/\1/p' "$1" | head -n1; }

new_build_dir() { # NAME -> empty directory under the cache (same filesystem as BIN_DIR: mv is atomic)
  mktemp -d "$CACHE_DIR/build.$1.XXXXXX"
}

finish() { # BUILT_FILE NAME  - move into place atomically, smoke-test it
  local dest
  dest=$(bin_path "$2")
  chmod 0755 "$1"
  mv -f "$1" "$dest"
  log "built $dest ($(du -h "$dest" | cut -f1))"
}

build_kubernetes() {
  local v=$K8S_VERSION
  local staging_v=v0.${v#v1.} # v1.33.13 -> v0.33.13: the published tags of the staging modules
  log "building kube-apiserver and kubectl $v (the longest step: ~700 CPU-seconds, 6-8 minutes on 2 idle cores, more on busy ones)"
  local gomod
  gomod=$(module_gomod k8s.io/kubernetes "$v")
  local dir
  dir=$(new_build_dir kubernetes)
  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with
  # ./staging/src/...; a replace in a dependency is ignored, so point each of them at its
  # published version from a throwaway main module.
  local replaces
  replaces=$(sed -n '/^replace (/,/^)/p' "$gomod" |
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*$#\t\1 => \1 '"$staging_v"'#p')
  [[ -n $replaces ]] || die "found no staging replace directives in $gomod"
  local godebug
  godebug=$(sed -n 's/^godebug \(.*\)$/godebug \1/p' "$gomod")
  cat >"$dir/go.mod" <<EOF
module redrive.invalid/build-kubernetes

go $(gomod_go_line "$gomod")

$godebug

require k8s.io/kubernetes $v

replace (
$replaces
)
EOF
  local info commit date
  info=${gomod%.mod}.info
  commit=$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$info")
  date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
  local minor=${v#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitCommit=${commit:-unknown} -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  mkdir -p "$dir/out"
  (cd "$dir" && gobuild -ldflags="$ldflags" -o "$dir/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) ||
    die "building kube-apiserver/kubectl $v failed (see the go output above; module dir $dir)"
  "$dir/out/kube-apiserver" --version >/dev/null || die "the freshly built kube-apiserver does not run"
  "$dir/out/kubectl" version --client >/dev/null || die "the freshly built kubectl does not run"
  finish "$dir/out/kube-apiserver" kube-apiserver
  finish "$dir/out/kubectl" kubectl
  rm -rf "$dir"
}

build_etcd() {
  local v=$ETCD_VERSION
  log "building etcd $v"
  local gomod
  gomod=$(module_gomod go.etcd.io/etcd/server/v3 "$v")
  local dir
  dir=$(new_build_dir etcd)
  # go.etcd.io/etcd/server/v3 has replace directives (to its sibling modules), so `go install
  # ...@version` refuses it; its root package is etcd's main package.
  cat >"$dir/go.mod" <<EOF
module redrive.invalid/build-etcd

go $(gomod_go_line "$gomod")

require go.etcd.io/etcd/server/v3 $v
EOF
  mkdir -p "$dir/out"
  (cd "$dir" && gobuild -ldflags="-s -w" -o "$dir/out/etcd" go.etcd.io/etcd/server/v3) ||
    die "building etcd $v failed (see the go output above; module dir $dir)"
  "$dir/out/etcd" --version >/dev/null || die "the freshly built etcd does not run"
  finish "$dir/out/etcd" etcd
  rm -rf "$dir"
}

build_helm() {
  local v=$HELM_VERSION
  log "building helm $v"
  local gomod
  gomod=$(module_gomod helm.sh/helm/v3 "$v")
  local dir
  dir=$(new_build_dir helm)
  cat >"$dir/go.mod" <<EOF
module redrive.invalid/build-helm

go $(gomod_go_line "$gomod")

require helm.sh/helm/v3 $v
EOF
  # helm's own go.mod replace directives (if any) would be ignored; copy them.
  sed -n '/^replace (/,/^)/p; /^replace [^(]/p' "$gomod" >>"$dir/go.mod"
  mkdir -p "$dir/out"
  (cd "$dir" && gobuild -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v" \
    -o "$dir/out/helm" helm.sh/helm/v3/cmd/helm) ||
    die "building helm $v failed (see the go output above; module dir $dir)"
  "$dir/out/helm" version --short >/dev/null || die "the freshly built helm does not run"
  finish "$dir/out/helm" helm
  rm -rf "$dir"
}

cmd_install() {
  mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR"
  need_cmd flock "install util-linux"
  exec 9>"$CACHE_DIR/install.lock" || die "cannot open $CACHE_DIR/install.lock"
  if ! flock -n 9; then
    log "waiting for another '$PROG install' to finish (lock $CACHE_DIR/install.lock)"
    flock 9 || die "could not take the lock $CACHE_DIR/install.lock"
  fi
  rm -rf "$CACHE_DIR"/build.* # left by a failed build (kept for debugging until the next install)
  local start=$SECONDS
  local built=0
  if [[ ! -x $(bin_path kube-apiserver) || ! -x $(bin_path kubectl) ]]; then
    check_go
    build_kubernetes
    built=1
  fi
  if [[ ! -x $(bin_path etcd) ]]; then
    check_go
    build_etcd
    built=1
  fi
  if [[ ! -x $(bin_path helm) ]]; then
    check_go
    build_helm
    built=1
  fi
  if ((built)); then
    log "install done in $((SECONDS - start))s"
  fi
  local name
  for name in etcd kube-apiserver kubectl helm; do
    [[ -x $(bin_path "$name") ]] || die "$(bin_path "$name") is missing after install"
  done
  flock -u 9
  echo "$BIN_DIR"
}

cmd_paths() {
  local name
  for name in etcd kube-apiserver kubectl helm; do
    echo "$name=$(bin_path "$name")"
  done
}

# ---- running a control plane ----------------------------------------------------------------------

require_bin() { # NAME -> path; fails if not installed
  local p
  p=$(bin_path "$1")
  [[ -x $p ]] || die "$p is missing: run '$SCRIPT_PATH install' first"
  echo "$p"
}

cmd_init() { # DIR ETCD_PORT ETCD_PEER_PORT APISERVER_PORT
  [[ $# -eq 4 ]] || die "usage: $PROG init DIR ETCD_PORT ETCD_PEER_PORT APISERVER_PORT"
  local dir=$1 etcd_port=$2 peer_port=$3 api_port=$4
  need_cmd openssl "install openssl (Debian package openssl)"
  mkdir -p "$dir/pki" "$dir/etcd" || die "cannot create $dir"
  chmod 0700 "$dir/pki" "$dir/etcd"
  dir=$(cd "$dir" && pwd)
  local pki=$dir/pki
  {
    # A CA and a serving certificate for 127.0.0.1/localhost signed by it (kept strict enough for
    # rustls/webpki: v3, CA:TRUE on the CA, SANs and serverAuth on the leaf).
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key"
    openssl req -x509 -new -key "$pki/ca.key" -sha256 -days 3650 -subj "/CN=redrive-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$pki/ca.crt"
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/apiserver.key"
    openssl req -new -key "$pki/apiserver.key" -subj "/CN=kube-apiserver" -out "$pki/apiserver.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1" \
      >"$pki/apiserver.ext"
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -sha256 -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt"
    # The service-account token signing key pair (TokenRequest API, projected tokens).
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
    rm -f "$pki/apiserver.csr" "$pki/apiserver.ext" "$pki/ca.srl"
  } >"$pki/openssl.log" 2>&1 || {
    cat "$pki/openssl.log" >&2
    die "generating certificates and keys with openssl in $pki failed"
  }
  local token
  token=$(openssl rand -hex 24) || die "openssl rand failed"
  # token,user,uid,"groups": a static admin in system:masters (bypasses RBAC).
  printf '%s,redrive-admin,redrive-admin,"system:masters"\n' "$token" >"$pki/tokens.csv"
  printf '%s\n' "$token" >"$dir/token"
  chmod 0600 "$pki"/*.key "$pki/tokens.csv" "$dir/token"
  cat >"$dir/cluster.env" <<EOF
ETCD_PORT=$etcd_port
ETCD_PEER_PORT=$peer_port
APISERVER_PORT=$api_port
EOF
  local ca_data
  ca_data=$(base64 -w0 <"$pki/ca.crt")
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: redrive-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca_data
users:
- name: redrive-admin
  user:
    token: $token
contexts:
- name: redrive-test
  context:
    cluster: redrive-test
    user: redrive-admin
    namespace: default
current-context: redrive-test
EOF
  chmod 0600 "$dir/kubeconfig"
}

load_env() { # DIR -> sets ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT
  ETCD_PORT='' ETCD_PEER_PORT='' APISERVER_PORT=''
  [[ -f $1/cluster.env ]] || die "$1/cluster.env is missing: run '$PROG init' (or start) first"
  # shellcheck disable=SC1091
  source "$1/cluster.env"
}

# With REDRIVE_CP_WATCH_PID set, kill this process (after exec: the server) once that PID is gone,
# so a test process that dies without running destructors does not leave servers behind.
start_watchdog() {
  local watch=${REDRIVE_CP_WATCH_PID:-}
  [[ -n $watch ]] || return 0
  local self=$$
  (
    exec </dev/null >/dev/null 2>&1
    while kill -0 "$watch" 2>/dev/null && kill -0 "$self" 2>/dev/null; do sleep 1; done
    kill -KILL "$self" 2>/dev/null || true
  ) &
}

cmd_run_etcd() { # DIR
  [[ $# -eq 1 ]] || die "usage: $PROG run-etcd DIR"
  local dir
  dir=$(cd "$1" && pwd) || die "no directory $1"
  load_env "$dir"
  local etcd
  etcd=$(require_bin etcd)
  start_watchdog
  exec "$etcd" \
    --name=redrive-test \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="redrive-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true \
    --log-level=warn
}

cmd_run_apiserver() { # DIR
  [[ $# -eq 1 ]] || die "usage: $PROG run-apiserver DIR"
  local dir
  dir=$(cd "$1" && pwd) || die "no directory $1"
  load_env "$dir"
  local apiserver
  apiserver=$(require_bin kube-apiserver)
  local pki=$dir/pki
  start_watchdog
  # No kubelet and no controller manager: the ServiceAccount admission plugin is off (nothing would
  # create the `default` ServiceAccount a Pod needs). PodSecurity admission stays on (default).
  # No endpoint reconciler: the `kubernetes` Endpoints cannot hold a loopback address.
  exec "$apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$dir/certs" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    --v=1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() { # -> a loopback port nothing listens on (and not in $*)
  local p _
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    [[ " $* " == *" $p "* ]] && continue
    if port_free "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "found no free loopback port"
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_start() { # DIR
  [[ $# -eq 1 ]] || die "usage: $PROG start DIR"
  mkdir -p "$1" || die "cannot create $1"
  local dir
  dir=$(cd "$1" && pwd)
  local kubectl
  kubectl=$(require_bin kubectl)
  require_bin etcd >/dev/null
  require_bin kube-apiserver >/dev/null
  if pid_alive "$dir/apiserver.pid" || pid_alive "$dir/etcd.pid"; then
    die "a control plane is already running in $dir (run '$PROG stop $dir' first)"
  fi
  if [[ ! -f $dir/cluster.env ]]; then
    local e p a
    e=$(pick_port)
    p=$(pick_port "$e")
    a=$(pick_port "$e" "$p")
    cmd_init "$dir" "$e" "$p" "$a"
  fi
  load_env "$dir"
  local port
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"; do
    port_free "$port" || die "port $port (from $dir/cluster.env) is in use"
  done
  nohup bash "$SCRIPT_PATH" run-etcd "$dir" >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  nohup bash "$SCRIPT_PATH" run-apiserver "$dir" >"$dir/apiserver.log" 2>&1 </dev/null &
  echo $! >"$dir/apiserver.pid"
  local deadline=$((SECONDS + 90))
  until "$kubectl" --kubeconfig="$dir/kubeconfig" get --raw=/readyz >/dev/null 2>&1; do
    local what
    for what in etcd apiserver; do
      if ! pid_alive "$dir/$what.pid"; then
        tail -n 40 "$dir/$what.log" >&2 || true
        cmd_stop "$dir" >/dev/null 2>&1 || true
        die "$what exited during start-up (log: $dir/$what.log)"
      fi
    done
    if ((SECONDS > deadline)); then
      tail -n 40 "$dir/apiserver.log" >&2 || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "kube-apiserver was not ready within 90s (log: $dir/apiserver.log)"
    fi
    sleep 0.5
  done
  log "control plane ready: https://127.0.0.1:$APISERVER_PORT (etcd 127.0.0.1:$ETCD_PORT), logs in $dir"
  echo "export KUBECONFIG=$dir/kubeconfig"
  echo "export PATH=$BIN_DIR/links:\$PATH"
  mkdir -p "$BIN_DIR/links"
  local name
  for name in etcd kube-apiserver kubectl helm; do
    [[ -x $(bin_path "$name") ]] && ln -sfn "$(bin_path "$name")" "$BIN_DIR/links/$name"
  done
}

stop_pidfile() { # PIDFILE
  local f=$1
  [[ -f $f ]] || return 0
  local pid
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_stop() { # DIR
  [[ $# -eq 1 ]] || die "usage: $PROG stop DIR"
  [[ -d $1 ]] || die "no directory $1"
  stop_pidfile "$1/apiserver.pid"
  stop_pidfile "$1/etcd.pid"
  log "stopped the control plane in $1 (data kept; 'start $1' resumes it)"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
  install) cmd_install "$@" ;;
  paths) cmd_paths "$@" ;;
  init) cmd_init "$@" ;;
  run-etcd) cmd_run_etcd "$@" ;;
  run-apiserver) cmd_run_apiserver "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//' >&2
    [[ -z $cmd ]] && exit 2
    die "unknown command '$cmd'"
    ;;
  esac
}

main "$@"
