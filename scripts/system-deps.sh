#!/usr/bin/env bash
# Installs the Debian packages the build and tests need and a fresh machine lacks:
#   cmake, g++ and libclang-dev: llama-cpp-2 builds llama.cpp from its vendored source with cmake and
#     generates its bindings with bindgen, which loads libclang.so (only libclang-dev ships that name;
#     libclang-cpp14, present on many machines, is a different library and does not do);
#   openssl: the TLS tests make their certificates with the openssl command;
#   postgresql: the cluster's metadata store, which the tests start in their own data directories;
#   redis-server: the cluster's shared limit store (rate limits and quotas across replicas);
#   haproxy: the shipped load-balancer configuration, which the routing test and benchmark run;
#   buildah: builds the OCI image from scratch (no pull), whose root filesystem a test starts the server in;
#   prometheus: promtool checks and unit-tests the shipped alert rules, and a real Prometheus scrapes a test
#     server to evaluate every query of the shipped Grafana dashboards;
#   chromium: the browser the console tests drive with Playwright (executable_path=/usr/bin/chromium; Playwright's
#     own browser download is never used).
# Packages are detected by their dpkg install status, never by a file that another package may also
# provide. Does nothing when they are all installed. Uses sudo when not root.
set -euo pipefail
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]; }
missing=()
for package in cmake g++ libclang-dev openssl postgresql redis-server haproxy buildah prometheus chromium; do
  installed "$package" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "yunmo: installing ${missing[*]} with apt-get ..." >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
