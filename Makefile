# fireops: `make demo` runs the main job end to end; `make test` installs and
# starts what the tests need (scripts/test-deps.sh) and runs them all.

GO        ?= go
BIN       ?= bin/fireops
PREFIX    ?= /usr/local
UNITDIR   ?= /etc/systemd/system
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG       := github.com/firetech/fireops/pkg/buildinfo
LDFLAGS   := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)
# go-nvml is cgo; its headers use deprecated declarations.
export CGO_CFLAGS ?= -O2 -Wno-deprecated-declarations

.PHONY: build test bench demo lint install install-files clean fuzz

# fuzz: every fuzz target (package:Name) for FUZZTIME each, one after the
# other; `make test` runs them for FUZZTIME_SHORT each. A crash leaves its
# input in the package's testdata/fuzz/<Name>/: keep it there as a
# regression seed once fixed. The short run counts inputs (300x), not
# seconds: a timed run can end with a spurious "context deadline exceeded"
# from Go's fuzzing engine when the time runs out while it minimizes a new
# input, which failed CI once with nothing found.
FUZZTIME       ?= 5m
FUZZTIME_SHORT ?= 300x
FUZZ_TARGETS := \
	./pkg/snapshot:FuzzDecodeList \
	./pkg/snapshot:FuzzParseManifest \
	./pkg/snapshot:FuzzReadIndex \
	./pkg/tarsafe:FuzzCleanName \
	./pkg/tarsafe:FuzzExtract \
	./pkg/tarsafe:FuzzExtractBytes

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fireops

test:
	bash scripts/test-deps.sh
	bash -c 'set -a; . .cache/testenv.sh; set +a; $(GO) vet ./... && $(GO) test -count=1 -timeout 30m ./...'
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# bench: the end-to-end comparison with the shell pipeline and restic on a
# generated ML-team dataset (BENCH_FLAGS=-size 256MiB for a quick run), then
# the Go micro-benchmarks (MongoDB dump/restore, volume read paths).
BENCH_FLAGS ?=
bench: build
	bash scripts/test-deps.sh
	$(GO) run ./internal/cmd/bench -fireops $(BIN) $(BENCH_FLAGS)
	bash -c 'set -a; . .cache/testenv.sh; set +a; $(GO) test -run "^$$" -bench . -benchtime 3x ./pkg/...'

demo: build
	bash scripts/demo.sh $(BIN)

# lint: gofmt, go vet and staticcheck (pinned in tools/staticcheck, built
# into .cache/bin; a finding that is wrong gets a //lint:ignore with why).
STATICCHECK := .cache/bin/staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) build -C tools/staticcheck -o $(CURDIR)/$(STATICCHECK) honnef.co/go/tools/cmd/staticcheck
	$(STATICCHECK) ./...

# install: the binary, the systemd units, a man page per command and the
# bash, zsh and fish completions. The pages and completions are written by
# the binary just built, from its own command tree (`fireops gen-docs`,
# `fireops completion SHELL`). install-files does the same with $(BIN) as
# it is, without building it.
MANDIR    ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
install: build
	$(MAKE) --no-print-directory install-files

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/fireops
	@for u in systemd/*.service systemd/*.timer; do \
		[ -e "$$u" ] || continue; \
		install -D -m 0644 "$$u" "$(DESTDIR)$(UNITDIR)/$$(basename $$u)"; \
	done
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(BIN) gen-docs --man $(DESTDIR)$(MANDIR)/man1
	$(BIN) completion bash > $(DESTDIR)$(BASHCOMPDIR)/fireops
	$(BIN) completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_fireops
	$(BIN) completion fish > $(DESTDIR)$(FISHCOMPDIR)/fireops.fish

clean:
	rm -rf bin
