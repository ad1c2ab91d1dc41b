#!/usr/bin/env bash
# Builds the image: `make image` (CUDA, infra/Dockerfile) or `make image-cpu` (infra/Dockerfile.cpu).
#
#   bash infra/build.sh cuda|cpu
#
# Environment: IMAGE (the tag), BASE_IMAGE (the FROM; default: Ray's image in the Dockerfile),
# TORCH_INDEX, BUILDER (docker | buildah; default: docker when its engine answers, else
# buildah with the vfs driver and chroot isolation, which need no daemon).
# CPU builds reuse wheels already on this machine: mmcv built by `make setup` (pip's wheel
# cache) and a torch 2.13.0 CPU wheel from pip's find-links; they go into .whl-image/ (git
# ignores it), so the 15-minute mmcv compile happens once per machine, not once per build.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: infra/build.sh cuda|cpu}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
case "$variant" in
  cuda) dockerfile=infra/Dockerfile; tag=${IMAGE:-action-finder:$version-cu128} ;;
  cpu) dockerfile=infra/Dockerfile.cpu; tag=${IMAGE:-action-finder:$version-cpu} ;;
  *) echo "unknown variant $variant (cuda or cpu)" >&2; exit 2 ;;
esac

rm -rf .whl-image && mkdir -p .whl-image
if [ "$variant" = cpu ]; then
  # a CUDA build of mmcv cannot come from here: only the CPU image takes these
  find "${PIP_CACHE_DIR:-$HOME/.cache/pip}/wheels" -name 'mmcv-2.1.0-cp311-*.whl' 2>/dev/null \
    | head -1 | xargs -r -I{} cp {} .whl-image/
  for dir in ${PIP_FIND_LINKS:-} ${WHEEL_DIRS:-}; do
    find "${dir#file://}" -maxdepth 1 -name 'torch-2.13.0+cpu-cp311-*.whl' 2>/dev/null \
      | head -1 | xargs -r -I{} cp {} .whl-image/
  done
fi
echo "prebuilt wheels: $(ls .whl-image | tr '\n' ' ')"

args=(--file "$dockerfile" --tag "$tag")
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${TORCH_INDEX:-}" ] && args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
builder=${BUILDER:-}
if [ -z "$builder" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then builder=docker; else builder=buildah; fi
fi
start=$(date +%s)
if [ "$builder" = docker ]; then
  # BuildKit reads infra/<Dockerfile>.dockerignore next to the Dockerfile
  DOCKER_BUILDKIT=1 docker build "${args[@]}" .
else
  buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" bud --isolation chroot --layers \
    --ignorefile "$dockerfile.dockerignore" "${args[@]}" .
fi
echo "built $tag with $builder in $(( $(date +%s) - start )) s"
