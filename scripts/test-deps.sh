#!/usr/bin/env bash
# Installs the real components the test suite runs (Debian 12): docker-registry (upstream), containerd +
# runc + ctr-remote (clients), skopeo/umoci (images), redis-server, fuse3 (fusermount), pigz, Go (the
# archive/tar and encoding/json oracles), gcc + zlib headers (the zlib checkpoint oracle), python3-yaml
# (deploy manifests), buildah + podman (the deploy/Dockerfile image test), libfuse3-dev + libisal-dev (the
# native FUSE server and the ISA-L span inflater).
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  docker-registry containerd runc stargz-snapshotter skopeo umoci redis-server fuse3 \
  pigz golang-go zlib1g-dev gcc g++ make python3 python3-yaml perl jq ca-certificates tar gzip attr \
  buildah podman openssl libfuse2 libfuse3-dev libisal-dev pkg-config >/dev/null
