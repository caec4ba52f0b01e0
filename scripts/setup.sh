#!/usr/bin/env bash
# scripts/setup.sh — install the Debian 12 packages sparrow's build and tests need (apt-get).
# Does nothing when they are all present; uses sudo when not run as root.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config   # compiler and build
  clang libclang-rt-14-dev            # libFuzzer targets, sanitizer runtimes
  libcriterion-dev                    # unit tests
  libcjson-dev                        # JSON (api/)
  libcurl4-openssl-dev libssl-dev     # sparrow pull (HTTP client, sha256)
  libuv1-dev libmicrohttpd-dev        # the HTTP server (server/)
  libpcre2-dev                        # tokenizer pre-tokenizer regexes (engine/)
  curl                                # server integration tests
  openssl strace                      # security test: a self-signed certificate; no file opened by requests
  chromium                            # the web page test (headless, driven by playwright-core)
  python3-jinja2                      # the chat-template oracle (../shared/templates/render_reference.py)
  python3 python3-numpy               # reference checkers in ../shared (check_logits.py)
  ocl-icd-opencl-dev opencl-c-headers # the OpenCL backend: ICD loader (-lOpenCL) and headers
  pocl-opencl-icd clinfo              # an OpenCL CPU device for its tests (PoCL), and clinfo
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# the OpenAI Node SDK test needs node + npm; any install of them will do (Debian's or NodeSource's)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" ||
  { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
