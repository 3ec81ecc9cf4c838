#!/usr/bin/env bash
# Installs and starts what the tests need on a fresh Debian machine (run as root):
# a Docker engine, a local registry on 127.0.0.1:5000, PostgreSQL, Chromium, tfx-cli, buildah, podman and
# skopeo (engine-less pushes), plus the tools the deploy tests use: kubectl (renders deploy/kubernetes with
# kustomize) and debootstrap (builds the local Debian base image the Dockerfile is tested on, as there is no
# Docker Hub in CI).
# Idempotent: what is already installed or running is left as it is.
set -euo pipefail

log() { echo "[services] $*"; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v node >/dev/null || need_apt+=(nodejs npm)
# Clients that push without the Docker engine: registry-side capture tests, and the collector reads
# podman's event log and resolves podman's pushed digests with skopeo.
command -v buildah >/dev/null || need_apt+=(buildah)
command -v podman >/dev/null || need_apt+=(podman)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v tfx >/dev/null; then
  log "npm install -g tfx-cli"
  npm install -g --no-fund --no-audit tfx-cli >/dev/null
fi

state_dir=${IMAGETRAIL_SERVICES_DIR:-/var/lib/imagetrail-test}
mkdir -p "$state_dir"

# podman and buildah: vfs storage, which works inside this kind of sandbox (overlay needs a kernel mount). Only
# when the machine has no storage configuration of its own (or only the driver line an earlier version of this
# script wrote: a storage.conf without runroot and graphroot makes buildah refuse to start); tests give podman
# and buildah their own storage and event log anyway.
if [ ! -e /etc/containers/storage.conf ] || [ "$(cat /etc/containers/storage.conf)" = $'[storage]\ndriver = "vfs"' ]; then
  log "configuring podman and buildah for vfs storage"
  mkdir -p /etc/containers
  printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
    >/etc/containers/storage.conf
fi

# Docker engine: vfs storage and no bridge, which work inside this kind of sandbox.
if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    --data-root "$state_dir/docker" >"$state_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
  docker version >/dev/null 2>&1 || { log "dockerd did not start:"; tail -20 "$state_dir/dockerd.log"; exit 1; }
fi

# Registry on 127.0.0.1:5000 (Docker treats 127.0.0.0/8 as an insecure registry by default).
if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  log "starting docker-registry on 127.0.0.1:5000"
  cat >"$state_dir/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state_dir/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
  nohup docker-registry serve "$state_dir/registry.yml" >"$state_dir/registry.log" 2>&1 &
  for _ in $(seq 1 40); do curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break; sleep 0.25; done
  curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || { log "registry did not start"; cat "$state_dir/registry.log"; exit 1; }
fi

# PostgreSQL: this kind of machine starts it before the session; start it again if it stopped.
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 40); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 0.25; done
fi
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { log "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
log "ready: docker $(docker version --format '{{.Server.Version}}'), registry 127.0.0.1:5000, PostgreSQL 127.0.0.1:5432"
