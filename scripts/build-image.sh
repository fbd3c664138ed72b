#!/usr/bin/env bash
# Builds Yunmo's OCI image with buildah from `scratch`, pulling nothing: the given `yunmo` binary (stripped
# into a temporary copy when it carries symbols), the shared libraries it and ONNX Runtime link (found with
# ldd, plus the dynamic loader), ONNX Runtime itself, CA certificates, passwd/group entries for the
# non-root user 65532, /tmp and the data volume /var/lib/yunmo. The layout, user, environment and ports are
# the Dockerfile's (docs/container.md), so an image built here and one built by Docker behave alike.
#
# Usage: scripts/build-image.sh [--binary PATH] [--name NAME] [--root DIR] [--runroot DIR] [--ort PATH]
#                               [--oci-archive PATH] [--docker-archive PATH] [--label KEY=VALUE ...]
#   --binary          the yunmo binary (default $CARGO_TARGET_DIR/release/yunmo, else target/release/yunmo)
#   --name            image name (default yunmo:dev)
#   --root            buildah storage root, vfs driver (default $YUNMO_CACHE/containers/storage)
#   --runroot         buildah run state (default <root>-run, beside the storage root)
#   --ort             libonnxruntime.so (default $ORT_DYLIB_PATH, else $YUNMO_CACHE/lib/libonnxruntime.so.1.31.1)
#   --oci-archive     also write the image as an OCI archive (podman load, skopeo copy oci-archive:PATH ...)
#   --docker-archive  also write it as a Docker archive (docker load)
#   --label           an extra image label (repeatable)
# Needs root (the vfs driver and mounting the working container); prints each step on stderr and the image
# ID on stdout. Exits non-zero with a message on any failure, and leaves no working container behind.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${YUNMO_CACHE:-$HOME/.cache/yunmo}"

say() { echo "build-image: $*" >&2; }
die() { echo "build-image: error: $*" >&2; exit 1; }

binary="${CARGO_TARGET_DIR:-$ROOT/target}/release/yunmo"
name="yunmo:dev"
storage_root="$CACHE/containers/storage"
runroot=""
ort="${ORT_DYLIB_PATH:-$CACHE/lib/libonnxruntime.so.1.31.1}"
oci_archive=""
docker_archive=""
extra_labels=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --name) name="${2:?--name needs a name}"; shift 2 ;;
    --root) storage_root="${2:?--root needs a directory}"; shift 2 ;;
    --runroot) runroot="${2:?--runroot needs a directory}"; shift 2 ;;
    --ort) ort="${2:?--ort needs a path}"; shift 2 ;;
    --oci-archive) oci_archive="${2:?--oci-archive needs a path}"; shift 2 ;;
    --docker-archive) docker_archive="${2:?--docker-archive needs a path}"; shift 2 ;;
    --label) extra_labels+=("${2:?--label needs KEY=VALUE}"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
runroot="${runroot:-${storage_root%/}-run}"

# In-image paths; the Dockerfile uses the same ones.
ORT_IN_IMAGE="/usr/local/lib/$(basename "$ort")"
DATA_DIR=/var/lib/yunmo
USER_ID=65532

command -v buildah >/dev/null || die "buildah is not installed: run scripts/system-deps.sh (Debian package 'buildah')"
[ "$(id -u)" -eq 0 ] || die "buildah's vfs storage and 'buildah mount' need root here; run as root (sudo), or set up rootless buildah (subuid/subgid ranges, 'buildah unshare') yourself"
for tool in ldd strip readelf; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (Debian packages libc-bin and binutils)"
done
[ -f "$binary" ] && [ -x "$binary" ] || die "no executable binary at $binary: build it with 'cargo build --release -p yunmo-server' or pass --binary"
[ -f "$ort" ] || die "no ONNX Runtime library at $ort: run scripts/fetch-assets.sh ort, or pass --ort"
CA_FILE=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA_FILE" ] || die "no CA bundle at $CA_FILE (Debian package ca-certificates)"

work=$(mktemp -d)
buildah_cmd=(buildah --root "$storage_root" --runroot "$runroot" --storage-driver vfs)
container=""
mounted=""
cleanup() {
  local status=$?
  if [ -n "$mounted" ]; then "${buildah_cmd[@]}" umount "$container" >/dev/null 2>&1 || true; fi
  if [ -n "$container" ]; then "${buildah_cmd[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  [ $status -eq 0 ] || say "failed (exit $status); no working container left behind"
}
trap cleanup EXIT

# A binary with a symbol table or debug sections is stripped into a copy; the given file is left as it is.
size_mb() { echo "$(( $(stat -c %s "$1") / 1048576 )) MB"; }
# (readelf's output is read whole first: `grep -q` on a pipe can end it early, and pipefail then says "no".)
sections=$(readelf -S --wide "$binary") || die "$binary is not an ELF file readelf can read"
if grep -qE ' \.(symtab|debug_[a-z_]+) ' <<<"$sections"; then
  strip --strip-all -o "$work/yunmo" "$binary" || die "could not strip $binary"
  say "stripped $binary ($(size_mb "$binary")) into a copy of $(size_mb "$work/yunmo")"
else
  cp "$binary" "$work/yunmo"
  say "using $binary as it is ($(size_mb "$binary"), already stripped)"
fi

# The shared libraries the binary and ONNX Runtime load, and the dynamic loader, at the paths ldd reports.
libraries() {
  local file="$1" output
  output=$(ldd "$file" 2>&1) || { [[ "$output" == *"not a dynamic executable"* ]] && return 0; die "ldd $file failed: $output"; }
  if grep -q "not found" <<<"$output"; then die "libraries of $file not found on this machine: $(grep 'not found' <<<"$output" | tr -s ' \t' ' ')"; fi
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
  # linux-vdso has no file.
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$output"
}
libraries "$work/yunmo" > "$work/libraries"
libraries "$ort" >> "$work/libraries"
mapfile -t shared_libraries < <(sort -u "$work/libraries")

say "creating a working container from scratch in $storage_root (vfs)"
mkdir -p "$storage_root" "$runroot"
container=$("${buildah_cmd[@]}" from --name "yunmo-build-$$" scratch) || die "buildah from scratch failed"
mount_point=$("${buildah_cmd[@]}" mount "$container") || die "buildah mount failed"
mounted=1

install -d -m 0755 "$mount_point"/{etc/ssl/certs,usr/local/bin,usr/local/lib,proc,sys,dev,var/lib}
install -d -m 1777 "$mount_point/tmp"
install -d -m 0750 -o "$USER_ID" -g "$USER_ID" "$mount_point$DATA_DIR" "$mount_point/home/nonroot"
install -m 0755 "$work/yunmo" "$mount_point/usr/local/bin/yunmo"
install -m 0644 "$ort" "$mount_point$ORT_IN_IMAGE"
for library in "${shared_libraries[@]}"; do
  # The file itself (ldd's paths may be symlinks, or sit under a symlinked /lib), at the path the loader asks for.
  install -D -m 0755 "$(readlink -f "$library")" "$mount_point$library"
done
say "copied /usr/local/bin/yunmo, $ORT_IN_IMAGE and ${#shared_libraries[@]} shared libraries: ${shared_libraries[*]}"
install -m 0644 "$CA_FILE" "$mount_point/etc/ssl/certs/ca-certificates.crt"
# The same entries as distroless's, so the Dockerfile's image and this one have the same users.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' "$USER_ID" "$USER_ID" > "$mount_point/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$USER_ID" > "$mount_point/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$mount_point/etc/nsswitch.conf"
chmod 0644 "$mount_point"/etc/{passwd,group,nsswitch.conf}
say "wrote CA certificates, /etc/passwd and /etc/group (nonroot $USER_ID), /tmp (1777) and $DATA_DIR (owned by $USER_ID)"
"${buildah_cmd[@]}" umount "$container" >/dev/null
mounted=""

# PATH and SSL_CERT_FILE are what the Dockerfile's base image (distroless) sets; the rest is the Dockerfile's.
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' "$ROOT/Cargo.toml")
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
labels=(
  "org.opencontainers.image.title=yunmo"
  "org.opencontainers.image.description=Yunmo, a self-hostable model-as-a-service server (KServe V2, OpenAI API)"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "${extra_labels[@]}"
)
label_args=()
for label in "${labels[@]}"; do label_args+=(--label "$label"); done
"${buildah_cmd[@]}" config \
  --os linux --arch "$arch" \
  --entrypoint '["/usr/local/bin/yunmo"]' --cmd '["serve"]' \
  --env YUNMO__SERVER__HOST=0.0.0.0 \
  --env "YUNMO__STORAGE__DATA_DIR=$DATA_DIR" \
  --env "ORT_DYLIB_PATH=$ORT_IN_IMAGE" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --user "$USER_ID:$USER_ID" --workingdir "$DATA_DIR" \
  --port 8080/tcp --port 8081/tcp --volume "$DATA_DIR" --stop-signal SIGTERM \
  "${label_args[@]}" "$container" || die "buildah config failed"

previous=$("${buildah_cmd[@]}" images --quiet --no-trunc "$name" 2>/dev/null || true)
previous="${previous#sha256:}"
image_id=$("${buildah_cmd[@]}" commit --quiet --format oci --rm "$container" "$name") || die "buildah commit failed"
container=""
say "committed $name ($image_id)"
if [ -n "$previous" ] && [ "$previous" != "$image_id" ]; then
  # The image this name pointed to before is now untagged; with vfs it is a full copy, so remove it.
  "${buildah_cmd[@]}" rmi "$previous" >/dev/null 2>&1 && say "removed the previous $name ($previous)" \
    || say "kept the previous $name ($previous): a container still uses it"
fi

if [ -n "$oci_archive" ]; then
  rm -f "$oci_archive"
  "${buildah_cmd[@]}" push --quiet "$name" "oci-archive:$oci_archive:$name" || die "writing the OCI archive $oci_archive failed"
  say "wrote the OCI archive $oci_archive ($(size_mb "$oci_archive"))"
fi
if [ -n "$docker_archive" ]; then
  rm -f "$docker_archive"
  "${buildah_cmd[@]}" push --quiet "$name" "docker-archive:$docker_archive:$name" || die "writing the Docker archive $docker_archive failed"
  say "wrote the Docker archive $docker_archive ($(size_mb "$docker_archive"))"
fi
say "done: buildah --root $storage_root --runroot $runroot --storage-driver vfs images $name"
echo "$image_id"
