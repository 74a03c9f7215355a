#!/usr/bin/env bash
# Builds one of the prebuilt job images offline: mmdebstrap (Debian bookworm, minbase) piped into `docker import`.
#
#   stack/images/build.sh <alias> [--force]      alias: ouro-python | ouro-ubuntu | ouro-nodejs
#
# The image is tagged `<alias>:latest` and labelled `ouro.image.recipe=<sha256 of the recipe>`; when an image with
# that tag already carries the same label the script exits 0 at once, so callers can run it unconditionally.
# Needs root (mmdebstrap's root mode), mmdebstrap and a Docker engine. Packages come from the machine's own apt
# sources (/etc/apt/sources.list*), never from a hard-coded mirror: the machine may only reach its configured one.
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 1; }

alias_name="${1:-}"
force=0
[[ "${2:-}" == "--force" ]] && force=1

suite=bookworm
variant=minbase

# Per alias: the packages, and a customize hook run on the finished root (as `sh -c CMD exec "$ROOT"`).
case "$alias_name" in
  ouro-python)
    # python-is-python3: `python` is the name the public API examples use (ENTRYPOINT ["python", "main.py"]).
    packages="python3,python3-pip,python-is-python3"
    # Debian marks its Python as externally managed (PEP 668) and pip then refuses to install anything; jobs are
    # throwaway containers, so plain `pip install` must work.
    customize='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
    ;;
  ouro-ubuntu)
    # Named for the alias the public API uses; it is honestly Debian bookworm with common shell tools.
    packages="bash,coreutils,ca-certificates,curl,procps,findutils,grep,sed,gawk,tar,gzip"
    customize='true'
    ;;
  ouro-nodejs)
    packages="nodejs,npm"
    customize='true'
    ;;
  *)
    die "usage: build.sh <ouro-python|ouro-ubuntu|ouro-nodejs> [--force]"
    ;;
esac

# Docs, man pages and translations are dead weight in a job sandbox; copyright files stay (licences).
dpkg_opts=(
  'path-exclude=/usr/share/doc/*'
  'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/man/*'
  'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/locale/*'
  'path-include=/usr/share/locale/locale.alias'
  'path-exclude=/usr/share/lintian/*'
)
# Image config given to `docker import`. HOME is set per job by the executor.
changes=(
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  'ENV LANG=C.UTF-8'
  'ENV PYTHONUNBUFFERED=1'
  'WORKDIR /workspace'
  'CMD ["/bin/bash"]'
)

# The recipe is every input that decides the image's content; its hash is the cache key. The mirror is not part
# of it: the same suite from another mirror is the same recipe.
recipe="$(
  printf 'format=1\nalias=%s\nsuite=%s\nvariant=%s\nhooks=merged-usr\ninclude=%s\ncustomize=%s\n' \
    "$alias_name" "$suite" "$variant" "$packages" "$customize"
  printf 'dpkgopt=%s\n' "${dpkg_opts[@]}"
  printf 'change=%s\n' "${changes[@]}"
)"
recipe_sha="$(printf '%s' "$recipe" | sha256sum | cut -d' ' -f1)"
tag="${alias_name}:latest"

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"

existing="$(docker image inspect --format '{{index .Config.Labels "ouro.image.recipe"}}' "$tag" 2>/dev/null || true)"
if [[ $force -eq 0 && "$existing" == "$recipe_sha" ]]; then
  echo "build.sh: $tag is up to date (recipe $recipe_sha)"
  exit 0
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install -y mmdebstrap)"
hook_dir=/usr/share/mmdebstrap/hooks/merged-usr
[[ -d $hook_dir ]] || die "mmdebstrap hook directory $hook_dir is missing"

# Active apt sources of this machine that serve our suite (third-party repos such as a Node.js vendor's would need
# their keys inside the chroot and are not what we want anyway). Only *.list and *.sources are read by apt, so
# disabled files (other suffixes) are skipped the same way.
mirrors=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  grep -v '^[[:space:]]*#' "$f" | grep -qw "$suite" || continue
  mirrors+=("$f")
done
[[ ${#mirrors[@]} -gt 0 ]] || die "no apt source for $suite in /etc/apt/sources.list*"

echo "build.sh: building $tag (recipe $recipe_sha) from ${mirrors[*]}" >&2
start=$(date +%s)

change_args=()
for c in "${changes[@]}"; do change_args+=(--change "$c"); done
change_args+=(--change "LABEL ouro.image.recipe=$recipe_sha" --change "LABEL ouro.image.alias=$alias_name")

dpkg_args=()
for o in "${dpkg_opts[@]}"; do dpkg_args+=(--dpkgopt="$o"); done

# `docker import` may accept a tarball cut short when mmdebstrap dies half-way, and would label it as a good
# build. So import under a scratch tag and move `<alias>:latest` only when the whole pipeline succeeded.
scratch="${alias_name}:building-$$"
previous="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
cleanup() { docker image rm "$scratch" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mmdebstrap \
  --mode=root \
  --variant="$variant" \
  --include="$packages" \
  --hook-dir="$hook_dir" \
  "${dpkg_args[@]}" \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --aptopt='Acquire::Languages "none"' \
  --customize-hook="$customize" \
  --format=tar \
  "$suite" - "${mirrors[@]}" \
  | docker import "${change_args[@]}" - "$scratch" >/dev/null
docker tag "$scratch" "$tag"
# The image the tag used to name is dead weight now (kept if a container still uses it).
if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi

echo "build.sh: built $tag in $(( $(date +%s) - start )) s" >&2
