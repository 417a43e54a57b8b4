package node

import "time"

// stamp formats t as the node's messages do.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
