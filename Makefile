# postling: build, run, test.
#
#   make run     build and start `postling serve` on etc/dev.conf (127.0.0.1:2525, spool
#                and Maildirs under var/), Ctrl-C stops it
#   make test    install what the tests need when missing, then unit + integration tests
#
# Every install step the tests need lives here, so a fresh clone on a fresh machine works.

CARGO   ?= cargo
BIN     := target/release/postling
DEV_BIN := target/debug/postling
MUSL    := x86_64-unknown-linux-musl
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the integration tests talk to: swaks (with TLS), curl, openssl,
# dnsmasq (the test DNS server that holds MX records). Python's aiosmtpd (pip) is the
# receiving MX.
TEST_DEBS := swaks libnet-ssleay-perl libio-socket-ssl-perl curl openssl dnsmasq-base

# $(call apt_install,PACKAGES): install the Debian packages that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all build run test test-deps lint fmt static fuzz bench bench-deps clean

all: build

build:
	$(CARGO) build --release

run: build
	mkdir -p var/spool var/mail/dev
	$(BIN) serve -c etc/dev.conf

test: test-deps
	$(CARGO) test --all-targets

test-deps:
	$(call apt_install,$(TEST_DEBS))
	@python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install -q aiosmtpd

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# A static musl binary for routers and containers: target/x86_64-unknown-linux-musl/release/postling
static:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(call apt_install,musl-tools)
	$(CARGO) build --release --target $(MUSL)
	@ls -l target/$(MUSL)/release/postling

# Fuzz the DNS answer parser (nightly + cargo-fuzz; not part of make test: the fuzz
# build alone takes minutes). FUZZ_SECONDS=600 by default.
FUZZ_SECONDS ?= 600
fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install -q cargo-fuzz
	cd fuzz && cargo +nightly fuzz run dns_answer -- -max_total_time=$(FUZZ_SECONDS)

# Benchmarks (issue 8): smtp-source -> postling -> smtp-sink and friends, written to
# BENCHMARKS.md by tests/bench/bench.py. BENCH_PEERS=postfix also starts a private
# Postfix instance (own config and queue under /var/tmp; the system one is left alone)
# and compares. BENCH_RUNS=3 interleaved runs; about 15 minutes with Postfix.
# smtp-source/smtp-sink come from the Debian postfix package, installed with
# "No configuration" so that nothing starts a system Postfix.
BENCH_DEBS := dnsmasq-base strace file musl-tools
bench: bench-deps
	python3 tests/bench/bench.py

bench-deps:
	@if [ ! -x /usr/sbin/smtp-source ]; then \
		echo "installing: postfix (for smtp-source, smtp-sink)"; \
		echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix; \
	fi
	$(call apt_install,$(BENCH_DEBS))
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)

clean:
	$(CARGO) clean
	rm -rf var
