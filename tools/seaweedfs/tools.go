//go:build tools

// Package tools pins SeaweedFS, the S3-compatible server the datacenter's
// S3 replica tests run against. It is a module of its own so the main module
// never depends on it; `make bin/weed` builds the server from here.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
