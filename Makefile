# inspectd — build, test and run the lab.
#   make demo   builds, sets up the lab, runs a real FTP download through inspectd
#   make test   everything: lint, unit tests, fuzz seed corpora, end-to-end tests (root)

GO          ?= go
BIN         := bin/inspectd
VERSION     := $(shell git describe --always --dirty 2>/dev/null || echo dev)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin

.PHONY: all build test unit e2e lint deps bench bench-lab demo fuzz clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/inspectd

# deps installs the Debian packages the end-to-end tests and the demo use
# (only those that are missing).
deps:
	bash scripts/install-deps.sh

lint:
	@test -x $(GOBIN)/staticcheck || $(GO) install $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: build
	$(GO) test -count=1 -timeout 20m ./e2e/

test: deps lint build
	$(GO) test -count=1 -timeout 25m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-lab: deps build
	bash scripts/bench-lab.sh

demo: deps build
	bash scripts/demo.sh

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./rules/
	$(GO) test -run '^$$' -fuzz FuzzProcess -fuzztime 30s -fuzzminimizetime 1x ./inspect/
	$(GO) test -run '^$$' -fuzz FuzzStream -fuzztime 30s ./inspect/ftp/

clean:
	rm -rf bin
