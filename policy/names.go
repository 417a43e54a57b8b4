package policy

// ValidName checks a name or an ID (a node, a site, a request…) as the
// policy does: 1–63 letters, digits, '-', '_' and '.'. Clients that use an
// ID in a file name or a path check it with this first.
func ValidName(s string) error { return validName(s) }
