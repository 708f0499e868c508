#!/usr/bin/env bash
# Build the container image without a Docker daemon (buildah) and check it: the entry point
# under tini, the non-root user, `tributary migrate` against the local PostgreSQL.
#
# Where the base image can be pulled, it is. Where it cannot (no registry access, as on this
# project's CI), a stand-in with the same name is made from Debian's packages (mmdebstrap):
# that checks the Dockerfile's steps, the lock, the package and the entry point — not the
# official base image itself.
#
#   deploy/build-image.sh [TAG]        (as root; needs: apt-get install mmdebstrap buildah)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/tributary:ci}
base=$(sed -n 's/^ARG PYTHON_BASE=//p' Dockerfile)
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
work=$(mktemp -d)
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if ! buildah inspect --type image "$base" >/dev/null 2>&1 && ! buildah pull -q "$base" >/dev/null 2>&1; then
  echo "no registry gives $base: making a stand-in from Debian's packages"
  mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mmdebstrap --quiet --variant=apt \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd \
    --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
    bookworm "$work/base.tar" ${mirror:+"$mirror"}
  c=$(buildah from scratch); containers+=("$c")
  buildah add -q "$c" "$work/base.tar" /
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  buildah commit -q "$c" "docker.io/library/$base" >/dev/null
fi

buildah bud --quiet --format docker --pull=never --network host -v /etc/ssl/certs:/etc/ssl/certs:ro -t "$tag" .

c=$(buildah from "$tag"); containers+=("$c")
run() { buildah run --network host "$@"; }
[ "$(buildah inspect --format '{{.OCIv1.Config.User}}' "$tag")" = tributary ]
buildah inspect --format '{{.OCIv1.Config.Entrypoint}}' "$tag" | grep -q '/usr/bin/tini -- tributary'
buildah inspect --format '{{.Docker.Config.Healthcheck.Test}}' "$tag" | grep -q healthz
buildah inspect --format '{{.Docker.Config.StopSignal}}' "$tag" | grep -q SIGTERM
run "$c" -- tributary --help > /dev/null
database="tributary_image_$$"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $database"
trap 'psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"; cleanup' EXIT
run --env TRIBUTARY_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$database" \
    --env TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9 "$c" -- tributary migrate > /dev/null
applied=$(psql -tA -h 127.0.0.1 -U postgres -d "$database" -c "SELECT count(*) FROM schema_migrations")
echo "image $tag: entry point under tini, user tributary, health check, SIGTERM;" \
  "$applied migrations applied from the package"
