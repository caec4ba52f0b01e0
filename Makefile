# Makefile — a thin wrapper over the scripts and cmake, for the usual verbs:
#   make                              build (Release) into build/
#   make test                         every test (scripts/test.sh, as CI runs it)
#   make install PREFIX=/usr/local    the binary, the systemd unit and an example config
#   make uninstall PREFIX=/usr/local
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all build test install uninstall clean
all: build

build:
	scripts/build.sh build

test:
	scripts/test.sh

install: build
	DESTDIR="$(DESTDIR)" cmake --install build --prefix "$(PREFIX)"

uninstall:
	@test -f build/install_manifest.txt || { echo "nothing installed from this build"; exit 1; }
	xargs -d '\n' rm -f < build/install_manifest.txt

clean:
	rm -rf build build-asan build-fuzz build-arm64
