#!/usr/bin/env bash
# build.sh — build kube-apiserver, kubectl and etcd from their Go modules and
# cache them outside the repository.
#
#   scripts/cluster/build.sh            # prints the bin directory on stdout
#
# Result: ${WICKET_CACHE:-$HOME/.cache/wicket}/control-plane/<k8s>-etcd<etcd>/bin/
# holding kube-apiserver, kubectl and etcd. Progress goes to stderr; the only
# thing printed on stdout is the bin directory, so callers can do
#   BIN_DIR="$(scripts/cluster/build.sh)"
#
# Idempotent: when the three binaries are already cached it returns at once.
# Versions come from common.sh (K8S_VERSION, ETCD_VERSION env overrides).
#
# How: k8s.io/kubernetes cannot be built with `go install` because its go.mod
# replaces every staging module (k8s.io/api, k8s.io/apiserver, ...) with a
# local ./staging path. We generate a tiny harness module that requires
# k8s.io/kubernetes and carries one `replace k8s.io/X => k8s.io/X v0.Y.Z` per
# staging module, the list being read from that release's own go.mod. etcd's
# server module gets the same treatment for its sibling modules.
# All compilation runs under `nice -n 19` so it only takes idle CPU.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${SCRIPT_DIR}/common.sh"
LOG_TAG="build"

# How often the heartbeat reports that a long build step is still running.
HEARTBEAT_SECONDS=60

HEARTBEAT_PID=""

# --- helpers -----------------------------------------------------------------

# Runs the rest of the command line at the lowest CPU priority.
niced() {
  nice -n 19 "$@"
}

stop_heartbeat() {
  if [[ -n "$HEARTBEAT_PID" ]]; then
    kill "$HEARTBEAT_PID" 2>/dev/null || true
    wait "$HEARTBEAT_PID" 2>/dev/null || true
    HEARTBEAT_PID=""
  fi
}

# Prints "still running" every HEARTBEAT_SECONDS while a step runs, with the
# number of lines in the step's log: for `go build -v` that is one line per
# package compiled, out of STEP_TOTAL (packages not yet in GOCACHE) if known.
STEP_TOTAL=""
start_heartbeat() {
  local what="$1" logfile="$2"
  (
    while sleep "$HEARTBEAT_SECONDS"; do
      log "  ... still running: ${what} ($(wc -l <"$logfile" 2>/dev/null || echo 0)${STEP_TOTAL:+ of ~${STEP_TOTAL}} lines)"
    done
  ) &
  HEARTBEAT_PID=$!
}

# run_step NAME LOGFILE CMD... — runs CMD with its output in LOGFILE; on
# failure shows the log's tail and exits non-zero.
run_step() {
  local name="$1" logfile="$2" start=$SECONDS
  shift 2
  log "step: ${name} (log: ${logfile})"
  start_heartbeat "$name" "$logfile"
  if ! "$@" >"$logfile" 2>&1; then
    stop_heartbeat
    printf '%s\n' "----- last ${LOG_TAIL_LINES} lines of ${logfile} -----" >&2
    tail -n "$LOG_TAIL_LINES" "$logfile" >&2 || true
    die "step failed: ${name}"
  fi
  stop_heartbeat
  log "done: ${name} in $((SECONDS - start))s"
}

# Prints the `go` directive of a go.mod file (e.g. 1.26.0).
go_directive() {
  sed -n 's/^go[[:space:]]\{1,\}\([0-9.]*\).*/\1/p' "$1" | head -n 1
}

# Prints the `godebug` lines of a go.mod file, so the harness builds with the
# same runtime defaults as the upstream main module would.
godebug_lines() {
  grep -E '^godebug[[:space:]]' "$1" || true
}

# derive_replaces GOMOD VERSION — for every replace directive in GOMOD whose
# target is a local path (./staging/..., ../api, ...), prints
# "	MODULE => MODULE VERSION". Handles both the block and one-line forms.
derive_replaces() {
  local gomod="$1" version="$2"
  awk -v ver="$version" '
    /^replace[[:space:]]*\($/ { inblock = 1; next }
    inblock && /^\)/           { inblock = 0; next }
    {
      line = $0
      if (!inblock) {
        if (line !~ /^replace[[:space:]]/) next
        sub(/^replace[[:space:]]+/, "", line)
      }
      n = split(line, f, /[[:space:]]+/)
      # Fields: [""] MODULE [OLDVERSION] => TARGET [TARGETVERSION]
      mod = ""; target = ""
      for (i = 1; i <= n; i++) {
        if (f[i] == "") continue
        if (mod == "") { mod = f[i]; continue }
        if (f[i] == "=>") { target = f[i + 1]; break }
      }
      if (target ~ /^\.\.?\//) printf "\t%s => %s %s\n", mod, mod, ver
    }' "$gomod"
}

# go_download MODULE@VERSION — downloads a module and prints the path of its
# go.mod file (run outside any module so the harness cannot interfere).
go_download() {
  local modver="$1" json gomod
  json="$(cd "$CP_CACHE" && niced go mod download -json "$modver" 2>&1)" ||
    die "go mod download ${modver} failed: $(jq -r '.Error // empty' <<<"$json" 2>/dev/null || echo "$json")"
  gomod="$(jq -r '.GoMod // empty' <<<"$json")"
  [[ -f "$gomod" ]] || die "go mod download ${modver} gave no go.mod: ${json}"
  printf '%s\n' "$gomod"
}

# True when version A >= version B (dotted numbers).
version_ge() {
  [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]
}

# select_toolchain GO_VERSION — if the local go is older than GO_VERSION
# (a go.mod `go` directive), asks the go command to fetch a matching
# toolchain from the module proxy via GOTOOLCHAIN.
select_toolchain() {
  local need="$1" have
  have="$(GOTOOLCHAIN=local go env GOVERSION)"
  have="${have#go}"
  # Toolchain names need three components since Go 1.21 (go1.26 -> go1.26.0).
  [[ "$need" =~ ^[0-9]+\.[0-9]+$ ]] && need="${need}.0"
  if version_ge "$have" "$need"; then
    export GOTOOLCHAIN=local
  else
    log "local go ${have} is older than the required go ${need}: using GOTOOLCHAIN=go${need}"
    export GOTOOLCHAIN="go${need}"
  fi
}

# write_if_changed FILE — writes stdin to FILE only when the content differs,
# so an unchanged harness does not need a new `go mod tidy`.
write_if_changed() {
  local file="$1" tmp
  tmp="$(mktemp "${file}.XXXXXX")"
  cat >"$tmp"
  if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 1
  fi
  mv "$tmp" "$file"
}

# make_harness DIR MODULE_NAME GOMOD_OF_TARGET REQUIRE_LINE REPLACE_VERSION TOOL...
# Generates DIR/go.mod and resolves it with `go mod tidy` when it changed.
make_harness() {
  local dir="$1" name="$2" upstream_gomod="$3" require="$4" replace_version="$5"
  shift 5
  local tools=("$@") goversion replaces tool
  goversion="$(go_directive "$upstream_gomod")"
  [[ -n "$goversion" ]] || die "no go directive in ${upstream_gomod}"
  replaces="$(derive_replaces "$upstream_gomod" "$replace_version")"
  mkdir -p "$dir"
  if {
    printf '// Generated by scripts/cluster/build.sh — do not edit.\n'
    printf 'module %s\n\ngo %s\n\n' "$name" "$goversion"
    godebug_lines "$upstream_gomod"
    printf '\nrequire %s\n\ntool (\n' "$require"
    for tool in "${tools[@]}"; do printf '\t%s\n' "$tool"; done
    printf ')\n'
    if [[ -n "$replaces" ]]; then
      printf '\n// One replace per module the upstream go.mod points at a local path.\n'
      printf 'replace (\n%s\n)\n' "$replaces"
    fi
  } | write_if_changed "${dir}/go.mod.in" || [[ ! -f "${dir}/.tidy-ok" ]]; then
    # go.mod.in is the template; `go mod tidy` rewrites go.mod and go.sum.
    # .tidy-ok marks a completed resolution, so a failed one is retried.
    log "harness ${dir}: $(grep -c '=>' <<<"$replaces" || true) replace directives"
    rm -f "${dir}/.tidy-ok" "${dir}/go.sum"
    cp "${dir}/go.mod.in" "${dir}/go.mod"
    # shellcheck disable=SC2016  # $1 expands in the inner bash
    run_step "resolve modules for ${name##*/} (go mod tidy; downloads on a cold cache)" \
      "${CP_DIR}/logs/tidy-${name##*/}.log" \
      bash -c 'cd "$1" && nice -n 19 go mod tidy' _ "$dir"
    touch "${dir}/.tidy-ok"
  fi
}

# Prints how many packages PKG's build still has to compile (those GOCACHE
# lacks), for the progress report; prints nothing if `go list` fails.
count_stale_packages() {
  local dir="$1" pkg="$2" list
  if list="$(cd "$dir" && CGO_ENABLED=0 nice -n 19 go list -trimpath -deps -f '{{if .Stale}}x{{end}}' "$pkg" 2>/dev/null)"; then
    grep -c x <<<"$list" || true
  fi
}

# go_build HARNESS_DIR PACKAGE OUTPUT LDFLAGS — builds one binary into OUTPUT
# (via a temp file, so a half-written binary never looks finished).
go_build() {
  local dir="$1" pkg="$2" out="$3" ldflags="$4"
  if [[ -x "$out" ]]; then
    log "already built: ${out##*/}"
    return 0
  fi
  STEP_TOTAL="$(count_stale_packages "$dir" "$pkg")"
  # shellcheck disable=SC2016  # $1..$4 expand in the inner bash
  run_step "compile ${pkg}" "${CP_DIR}/logs/build-${out##*/}.log" \
    bash -c 'cd "$1" && CGO_ENABLED=0 nice -n 19 go build -v -trimpath -ldflags "$2" -o "$3.tmp" "$4" && mv "$3.tmp" "$3"' \
    _ "$dir" "$ldflags" "$out" "$pkg"
  STEP_TOTAL=""
}

# Linker flags that stamp the real version into the Kubernetes binaries, as
# kube's hack/lib/version.sh does (otherwise /version says v0.0.0-master).
# -s -w strip symbol tables like release builds do.
k8s_ldflags() {
  local info_file="$1" build_date minor
  build_date="$(jq -r '.Time // empty' "$info_file" 2>/dev/null || true)"
  minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
  local -a vars=(
    "gitVersion=v${K8S_VERSION}"
    "gitMajor=$(cut -d. -f1 <<<"$K8S_VERSION")"
    "gitMinor=${minor}"
    "gitTreeState=archive"
    "buildDate=${build_date:-1970-01-01T00:00:00Z}"
  )
  local flags="-s -w" v pkg
  for v in "${vars[@]}"; do
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      flags+=" -X ${pkg}.${v}"
    done
  done
  printf '%s\n' "$flags"
}

# --- main --------------------------------------------------------------------

main() {
  # Fast path: nothing to do when the cache entry is complete.
  if binaries_cached; then
    printf '%s\n' "$BIN_DIR"
    return 0
  fi

  command -v go >/dev/null || die "go is not installed (needed to build the control plane)"
  command -v jq >/dev/null || die "jq is not installed"
  mkdir -p "${CP_DIR}/logs"

  # One build at a time per cache entry; a second caller waits, then finds
  # the binaries cached.
  exec {lock_fd}>"${CP_DIR}/.build.lock"
  if ! flock -n "$lock_fd"; then
    log "another build.sh holds ${CP_DIR}/.build.lock; waiting for it"
    flock "$lock_fd"
  fi
  if binaries_cached; then
    printf '%s\n' "$BIN_DIR"
    return 0
  fi
  trap stop_heartbeat EXIT

  log "building Kubernetes v${K8S_VERSION} (kube-apiserver, kubectl) and etcd v${ETCD_VERSION} into ${BIN_DIR}"
  log "a cold build takes many minutes on 2 cores; progress is reported every ${HEARTBEAT_SECONDS}s"

  # Module and build caches shared by all versions, so a patch bump is cheap.
  export GOMODCACHE="${CP_CACHE}/go/mod"
  export GOCACHE="${CP_CACHE}/go/build"
  # -modcacherw keeps the module cache deletable with plain rm -rf.
  export GOFLAGS="-buildvcs=false -modcacherw"
  export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
  mkdir -p "$GOMODCACHE" "$GOCACHE"

  local partial="${CP_DIR}/bin.partial"
  mkdir -p "$partial"

  # Kubernetes: read the release's own go.mod for go version and staging list.
  log "step: download k8s.io/kubernetes@v${K8S_VERSION} metadata"
  local k8s_gomod
  k8s_gomod="$(go_download "k8s.io/kubernetes@v${K8S_VERSION}")"
  select_toolchain "$(go_directive "$k8s_gomod")"
  log "using $(go version)"
  make_harness "${CP_DIR}/harness/k8s" "wicket.invalid/control-plane-harness/k8s" \
    "$k8s_gomod" "k8s.io/kubernetes v${K8S_VERSION}" "v0.${K8S_VERSION#*.}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  local ldflags
  ldflags="$(k8s_ldflags "${k8s_gomod%.mod}.info")"
  go_build "${CP_DIR}/harness/k8s" k8s.io/kubernetes/cmd/kube-apiserver "${partial}/kube-apiserver" "$ldflags"
  go_build "${CP_DIR}/harness/k8s" k8s.io/kubernetes/cmd/kubectl "${partial}/kubectl" "$ldflags"

  # etcd: the server module's root is its main package.
  log "step: download go.etcd.io/etcd/server/v3@v${ETCD_VERSION} metadata"
  local etcd_gomod
  etcd_gomod="$(go_download "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}")"
  select_toolchain "$(go_directive "$etcd_gomod")"
  make_harness "${CP_DIR}/harness/etcd" "wicket.invalid/control-plane-harness/etcd" \
    "$etcd_gomod" "go.etcd.io/etcd/server/v3 v${ETCD_VERSION}" "v${ETCD_VERSION}" \
    go.etcd.io/etcd/server/v3
  go_build "${CP_DIR}/harness/etcd" go.etcd.io/etcd/server/v3 "${partial}/etcd" "-s -w"

  # Sanity check, then publish the finished directory in one rename.
  log "step: check the binaries run"
  "${partial}/kube-apiserver" --version >&2 || die "kube-apiserver --version failed"
  "${partial}/kubectl" version --client >&2 || die "kubectl version --client failed"
  "${partial}/etcd" --version >&2 || die "etcd --version failed"
  {
    printf 'k8s=%s\netcd=%s\ngo=%s\nbuilt=%s\nbuild_seconds=%s\n' \
      "$K8S_VERSION" "$ETCD_VERSION" "$(go env GOVERSION)" \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SECONDS"
  } >"${CP_DIR}/build-info.txt"
  rm -rf "$BIN_DIR"
  mv "$partial" "$BIN_DIR"

  log "built in $(elapsed): $(du -sh "$BIN_DIR" | cut -f1) of binaries in ${BIN_DIR}"
  log "cache size: $(du -sh "$CP_CACHE" | cut -f1) (${CP_CACHE})"
  printf '%s\n' "$BIN_DIR"
}

main "$@"
