#!/usr/bin/env bash
# Build the local stack's binaries from the Go module proxy, with the versions pinned in
# versions.env: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (k8s.io/kubernetes),
# etcd, helm, the S3 server (MinIO) and Kueue (its manager; its config/ is read from the module
# cache, printed as KUEUE_SRC). Each lands in a cache folder outside the repo keyed by
# its version, so a second run builds nothing. Prints "NAME=PATH" lines for the stack to read.
set -euo pipefail

source "$(dirname "$0")/versions.env"
CACHE_ROOT="${FFMPEG_K8S_CACHE:-$HOME/.cache/ffmpeg-k8s}"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

KUBE_BIN="$CACHE_ROOT/kube-$KUBE_VERSION"
ETCD_BIN="$CACHE_ROOT/etcd-$ETCD_VERSION"
HELM_BIN="$CACHE_ROOT/helm-$HELM_VERSION"
MINIO_BIN="$CACHE_ROOT/minio-$MINIO_VERSION"
KUEUE_BIN="$CACHE_ROOT/kueue-$KUEUE_VERSION"
mkdir -p "$KUBE_BIN" "$ETCD_BIN" "$HELM_BIN" "$MINIO_BIN" "$KUEUE_BIN"
# One build at a time per cache (`make setup` and a test run may both get here on a cold cache).
exec 9>"$CACHE_ROOT/.build.lock"
flock 9

build_kube() {
  local work="$CACHE_ROOT/build/kube-$KUBE_VERSION" staging="v0.${KUBE_VERSION#1.}" minor kmod ldf m cmd
  mkdir -p "$work" && cd "$work"
  # k/k requires every staging module at v0.0.0 (not served) and replaces it with a path; a
  # wrapper module must replace each one with its released v0.x twin.
  printf 'module local/kubebins\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes v%s\n' "$KUBE_VERSION" > go.mod
  kmod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(grep -oE '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$kmod" | awk '{print $1}' | sort -u); do
    go mod edit -replace="$m=$m@$staging"
  done
  printf '//go:build tools\n\npackage tools\n\nimport (\n' > tools.go
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >> tools.go
  done
  printf ')\n' >> tools.go
  go mod tidy >/dev/null
  minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
  ldf="-s -w"
  for m in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $m.gitVersion=v$KUBE_VERSION -X $m.gitMajor=1 -X $m.gitMinor=$minor"
    ldf="$ldf -X $m.gitTreeState=clean -X $m.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$KUBE_BIN/$cmd" ]] && continue
    echo "building $cmd v$KUBE_VERSION" >&2
    go build -trimpath -ldflags "$ldf" -o "$KUBE_BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$KUBE_BIN/$cmd.tmp" "$KUBE_BIN/$cmd"
  done
}

build_etcd() {
  local work="$CACHE_ROOT/build/etcd-$ETCD_VERSION"
  mkdir -p "$work" && cd "$work"
  # etcd's own go.mod has replace directives, so `go install` refuses it; a wrapper module works.
  printf 'module local/etcdbin\n\ngo 1.24.0\n' > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null
  go mod tidy >/dev/null
  echo "building etcd v$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
}

build_kueue() {
  local work="$CACHE_ROOT/build/kueue-$KUEUE_VERSION" kmod r
  mkdir -p "$work" && cd "$work"
  # A wrapper module, as for etcd; Kueue's own go.mod may `replace` modules (v0.11.x pins
  # controller-runtime that way) and `go build` of a dependency ignores those, so mirror each one.
  printf 'module local/kueuebin\n\ngo 1.25.0\n\nrequire sigs.k8s.io/kueue v%s\n' "$KUEUE_VERSION" > go.mod
  kmod=$(go mod download -json "sigs.k8s.io/kueue@v$KUEUE_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  while read -r r; do
    [[ -n "$r" ]] && go mod edit -replace="$r"
  done < <(python3 - "$kmod" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
lines = re.findall(r"^replace\s+(.+)$", text, re.M)
for block in re.findall(r"^replace\s*\((.*?)^\)", text, re.M | re.S):
    lines += [ln for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("//")]
for ln in lines:
    old, new = (part.split() for part in ln.split("=>"))
    if len(new) == 2:  # module => module version (a local path cannot be mirrored)
        print(f"{'@'.join(old)}={new[0]}@{new[1]}")
PY
)
  printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/kueue/cmd/kueue"\n' > tools.go
  go mod tidy >/dev/null
  echo "building kueue v$KUEUE_VERSION" >&2
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=v$KUEUE_VERSION" \
    -o "$KUEUE_BIN/kueue.tmp" sigs.k8s.io/kueue/cmd/kueue
  mv "$KUEUE_BIN/kueue.tmp" "$KUEUE_BIN/kueue"
}

ready() { for f in "$@"; do [[ -x "$f" ]] || return 1; done; }

ready "$KUBE_BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl} || (build_kube)
ready "$ETCD_BIN/etcd" || (build_etcd)
ready "$KUEUE_BIN/kueue" || (build_kueue)
if ! ready "$HELM_BIN/helm"; then
  echo "building helm v$HELM_VERSION" >&2
  GOBIN="$HELM_BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
fi
if ! ready "$MINIO_BIN/minio"; then
  echo "building minio $MINIO_VERSION" >&2
  GOBIN="$MINIO_BIN" go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
fi

echo "KUBE_BIN=$KUBE_BIN"
echo "ETCD_BIN=$ETCD_BIN"
echo "HELM_BIN=$HELM_BIN"
echo "MINIO_BIN=$MINIO_BIN"
echo "KUEUE_BIN=$KUEUE_BIN"
echo "KUEUE_SRC=$(go mod download -json "sigs.k8s.io/kueue@v$KUEUE_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')"
