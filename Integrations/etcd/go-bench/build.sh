#!/usr/bin/env bash
# Builds go-bench from Debian's Go packages only (GOPATH mode, no module downloads):
# `bash scripts/setup --go-bench` installs golang-go and golang-etcd-server-dev first.
set -euo pipefail
cd "$(dirname "$0")"
export GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="${GOCACHE:-/tmp/csmr-go-cache}"
go build -o go-bench main.go
echo "built $(pwd)/go-bench"
