# codex-connector: the MCP server, its Codex image and its tests.
CODEX_VERSION ?= 0.169.0
IMAGE         ?= codex-connector/codex:$(CODEX_VERSION)
# BASE is the image Dockerfile.codex builds on. When the default cannot be
# pulled (no registry reachable), `make image` builds a local Debian one
# (`make base`, with debootstrap) and uses it, and says so.
DEFAULT_BASE  := node:22-bookworm-slim
BASE          ?= $(DEFAULT_BASE)
LOCAL_BASE    ?= codex-connector/debian:bookworm
# CA_BUNDLE is a CA bundle (PEM) the image trusts besides Debian's: by
# default this machine's, so that npm in the build and tools in tasks get
# through a TLS-intercepting proxy as the host does. CA_BUNDLE= for none.
HOST_CA       := $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt))
CA_BUNDLE     ?= $(HOST_CA)
# root installs where every PATH looks; a user into ~/.local/bin.
PREFIX        ?= $(if $(filter 0,$(shell id -u)),/usr/local,$(HOME)/.local)
GO            ?= go
VERSION       ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X main.version=$(VERSION)

# RUNSC is gVisor's runsc that the gVisor tests register in an engine of
# their own, built from the Go module proxy at a pinned commit: Debian's
# (2022) cannot start a container with its own network stack on kernels
# from 6.11 on (gVisor issue #10704) and fails the statx calls coreutils
# makes. Static, because runsc runs itself again inside its chroot.
RUNSC_VERSION ?= v0.0.0-20260905035102-160fafc42237
RUNSC         := .build/runsc/$(RUNSC_VERSION)/runsc

.PHONY: build test test-images runsc soak image base install lint bench clean

build:
	# Static: the same binary runs the egress proxy (FROM scratch) and the
	# bridge inside task containers.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/codex-connector ./cmd/codex-connector

# The tests need a Docker engine; they fail (not skip) without one, and
# the Codex image (`make image`). test-images makes the toolchain images the
# tests run Codex on (Debian with Go, with Python), once per machine.
test: test-images runsc
	CODEX_CONNECTOR_TEST_RUNSC=$(CURDIR)/$(RUNSC) $(GO) test -race -count=1 -p 2 -timeout 20m ./...

# The random-fault soak, long: servers SIGKILLed at random moments and an
# engine restart under tasks (cmd/codex-connector/soak_test.go). `make test`
# runs a short one. SOAK_SEED=N replays the plan of a run that printed N.
SOAK_TASKS ?= 30
SOAK_KILLS ?= 15
soak:
	SOAK_TASKS=$(SOAK_TASKS) SOAK_KILLS=$(SOAK_KILLS) SOAK_SEED=$(SOAK_SEED) \
		$(GO) test -race -count=1 -run TestSoak -v -timeout 30m ./cmd/codex-connector

image:
	@mkdir -p .build/image
	@if [ -n "$(CA_BUNDLE)" ]; then cp "$(CA_BUNDLE)" .build/image/extra-ca.crt; else : > .build/image/extra-ca.crt; fi
	@base="$(BASE)"; \
	if [ "$$base" = "$(DEFAULT_BASE)" ] && ! docker image inspect "$$base" >/dev/null 2>&1 \
	    && ! docker pull -q "$$base" >/dev/null 2>&1; then \
	  echo "make image: cannot pull $$base (no registry reachable?); building on a local Debian base, $(LOCAL_BASE), instead" >&2; \
	  images/debian-base.sh $(LOCAL_BASE) || exit 1; \
	  base="$(LOCAL_BASE)"; \
	fi; \
	echo "make image: $(IMAGE) on $$base" >&2; \
	docker build -f Dockerfile.codex \
		--build-arg BASE=$$base --build-arg CODEX_VERSION=$(CODEX_VERSION) \
		-t $(IMAGE) .build/image

base:
	images/debian-base.sh $(LOCAL_BASE)

test-images:
	LOCAL_BASE=$(LOCAL_BASE) images/test-images.sh

runsc: $(RUNSC)
$(RUNSC):
	@mkdir -p $(dir $@)
	GOBIN=$(CURDIR)/$(dir $@) CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) install -p 2 gvisor.dev/gvisor/runsc@$(RUNSC_VERSION)

install: build
	install -d $(PREFIX)/bin
	install -m 0755 bin/codex-connector $(PREFIX)/bin/codex-connector
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on your PATH; add it (Claude Code runs codex-connector from PATH)";; esac

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# Benchmarks: every path measured side by side with its reference on the
# real engine, then one table of medians (ours, reference, ratio, target,
# met), also written as JSON to BENCH_JSON. BENCH_REPS (default 5) sets the
# repetitions, BENCH_HEAVY_REPS (default 3, 2 for the 20 running tasks)
# those of the runs of half a minute or more. About 15 minutes on 2 cores,
# about 2 GB of free disk, and 0.9 GB of cache made once; bench/README.md
# says what each row measures. A benchmark fails only when what it
# measures does not work; the table is printed anyway.
BENCH_JSON ?= bench/results.json
bench:
	@rows=$$(mktemp "$${TMPDIR:-/tmp}/codex-connector-bench.XXXXXX"); status=0; \
	export BENCH_OUT="$$rows"; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench || status=1; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./store || status=1; \
	$(GO) test -run '^$$' -bench . -benchtime $${BENCH_REPS:-5}x -timeout 20m ./runner || status=1; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./workspace || status=1; \
	$(GO) run ./bench/report "$$rows" $(BENCH_JSON) || status=1; \
	rm -f "$$rows"; exit $$status

clean:
	rm -rf bin .build
