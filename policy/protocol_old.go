//go:build custos_protocol1

package policy

// Protocol, in a build with the custos_protocol1 tag, is that of the first
// release: the rolling-upgrade test (e2e) runs such a build as "the
// previous release" beside this one. Release builds never set the tag.
const Protocol = 1
