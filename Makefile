# postling: build, run, test.
#
#   make run     build and start `postling serve` on etc/dev.conf (127.0.0.1:2525, spool
#                and Maildirs under var/), Ctrl-C stops it
#   make test    install what the tests need when missing, then unit + integration tests
#   make install install the binary, its links, the man pages and (when absent) the
#                configuration: PREFIX=/usr/local, DESTDIR for staging; make uninstall
#
# Every install step the tests need lives here, so a fresh clone on a fresh machine works.

CARGO   ?= cargo
# cargo's output directory: $CARGO_TARGET_DIR when set, as cargo itself does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN     := $(TARGET_DIR)/release/postling
DEV_BIN := $(TARGET_DIR)/debug/postling
MUSL    := x86_64-unknown-linux-musl
STATIC_BIN := $(TARGET_DIR)/$(MUSL)/release/postling
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

.PHONY: all build run test test-deps lint fmt static test-static fuzz soak bench bench-deps clean install uninstall

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

# A static musl binary for routers and containers: target/x86_64-unknown-linux-musl/release/postling.
# Checked: `file` must say statically linked and `ldd` must find no libraries.
static:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(call apt_install,musl-tools file)
	$(CARGO) build --release --target $(MUSL)
	strip $(STATIC_BIN)
	@file $(STATIC_BIN)
	@file -b $(STATIC_BIN) | grep -Eq 'statically linked|static-pie linked' || \
		{ echo "$(STATIC_BIN) is not statically linked" >&2; exit 1; }
	@ldd $(STATIC_BIN) 2>&1 | grep -Eq 'not a dynamic executable|statically linked' || \
		{ echo "ldd finds shared libraries in $(STATIC_BIN)" >&2; exit 1; }
	@echo "$(STATIC_BIN): static, stripped, $$(stat -c %s $(STATIC_BIN)) bytes"

# The client, hostile-input and lifecycle tests against the static binary
# (tests/common's bin() runs $POSTLING_BIN when set).
test-static: static test-deps
	POSTLING_BIN=$(abspath $(STATIC_BIN)) $(CARGO) test --test clients --test hostile --test lifecycle

# Install. Staged installs (packages, tests) set DESTDIR; the configuration path is
# compiled in, so it is always $(DESTDIR)/etc/postling.conf whatever PREFIX is, and an
# existing one is never overwritten. The release binary is built when missing (so that
# `make && sudo make install` does not run cargo as root); set BIN to install another
# (BIN=$(STATIC_BIN) after `make static`).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
CONF    := /etc/postling.conf
SPOOL   := /var/spool/postling
# Called by these names the binary is sendmail(8), mailq(1) and newaliases(8).
LINKS   := sendmail mailq newaliases

install:
	@[ -x $(BIN) ] || $(CARGO) build --release
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)/etc
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/postling
	for l in $(LINKS); do ln -sfn postling $(DESTDIR)$(BINDIR)/$$l; done
	install -m 0644 etc/postling.8 $(DESTDIR)$(MANDIR)/man8/postling.8
	install -m 0644 etc/postling.conf.5 $(DESTDIR)$(MANDIR)/man5/postling.conf.5
	@if [ -e $(DESTDIR)$(CONF) ]; then echo "kept the existing $(DESTDIR)$(CONF)"; \
	else echo "install -m 0644 etc/postling.conf $(DESTDIR)$(CONF)"; \
		install -m 0644 etc/postling.conf $(DESTDIR)$(CONF); fi
	@# The service sandbox (etc/postling.service) needs the spool to exist; postling
	@# sets the modes of what is inside itself.
	@[ -d $(DESTDIR)$(SPOOL) ] || { echo "install -d -m 0711 $(DESTDIR)$(SPOOL)"; \
		install -d -m 0711 $(DESTDIR)$(SPOOL); }

# Removes what install added: the links only where they still point to postling, the
# configuration only while it is the unedited example, the spool only when empty.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/postling
	for l in $(LINKS); do \
		[ "$$(readlink $(DESTDIR)$(BINDIR)/$$l)" != postling ] || rm -f $(DESTDIR)$(BINDIR)/$$l; done
	rm -f $(DESTDIR)$(MANDIR)/man8/postling.8 $(DESTDIR)$(MANDIR)/man5/postling.conf.5
	@if cmp -s etc/postling.conf $(DESTDIR)$(CONF); then echo "rm -f $(DESTDIR)$(CONF)"; \
		rm -f $(DESTDIR)$(CONF); \
	elif [ -e $(DESTDIR)$(CONF) ]; then echo "kept $(DESTDIR)$(CONF) (edited)"; fi
	@rmdir $(DESTDIR)$(SPOOL) 2>/dev/null || \
		{ [ ! -d $(DESTDIR)$(SPOOL) ] || echo "kept $(DESTDIR)$(SPOOL) (not empty)"; }

# Minutes-long crash-safety loop (kill -9 of serve and its passes while mail flows);
# not part of make test. SOAK_MESSAGES=3000 by default.
soak: test-deps
	$(CARGO) test --release --test soak -- --ignored --test-threads=1 --nocapture

# Fuzz every target in fuzz/ for FUZZ_SECONDS each (nightly + cargo-fuzz; not part of
# make test: the fuzz build alone takes minutes). FUZZ_TARGETS picks some.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= session dot_reader address command client_replies envelope headers_t config dns_answer
fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install -q cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		cargo +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -print_final_stats=1 || exit 1; \
	done

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
