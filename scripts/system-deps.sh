#!/usr/bin/env bash
# Installs the Debian packages the build and tests need and a fresh machine lacks: cmake and libclang-dev
# (llama-cpp-2 builds llama.cpp from its vendored source with cmake and generates bindings with bindgen),
# and openssl (the TLS tests' certificates).
# Does nothing when they are present. Uses sudo when not root.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
command -v c++ >/dev/null || missing+=(g++)
# The TLS client tests make their certificates with the openssl command.
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "yunmo: installing ${missing[*]} with apt-get ..." >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
