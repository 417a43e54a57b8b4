//go:build !custos_protocol1

package policy

// Protocol is the newest policy protocol this release speaks.
const Protocol = 3
