#!/usr/bin/env bash
# Installs the Debian 12 packages kiroku needs to build, test and run.
# Skips apt-get when everything is already installed (offline re-runs work).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  liblmdb-dev lmdb-utils       # the journal's storage
  libsodium-dev                # Ed25519, Argon2id, AEAD
  libssl-dev                   # SHA-256 (SHA-NI accelerated), TLS certificates
  libmsgpack-dev               # record and message encoding
  libnng-dev nng-utils         # the API transport
  libjansson-dev               # `kiroku call` (JSON), tests (JSON test vectors)
  libcmocka-dev openssl        # tests (openssl verifies `kiroku certs` output)
  python3                      # tests (a JSON reader for `kiroku call` output)
  libmicrohttpd-dev            # the operators' HTTP endpoint (metrics, health)
  prometheus                   # tests (promtool checks the /metrics page)
  libcurl4-openssl-dev         # e-mail delivery over SMTP (api/smtp.c)
  python3-aiosmtpd             # tests (an SMTP relay on loopback)
  libnats-dev                  # replication, leases and the shard map (NATS JetStream)
  nats-server                  # tests and benches (a JetStream cluster on loopback)
  chromium chromium-driver     # tests: the console in a headless browser (tests/console/)
  python3-selenium             # tests: drives the browser through chromedriver
  fonts-noto-cjk               # tests: Japanese in the console's screenshots
)
if [ "${KIROKU_FUZZ:-0}" = 1 ]; then
  packages+=(clang-14 libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "run as root or install sudo" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
