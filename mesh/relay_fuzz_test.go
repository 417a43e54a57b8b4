package mesh

import (
	"testing"
)

// The relay adds two decoders of bytes from outside: the endpoint string
// (from the UAPI configuration) and derpserver's admission request (from a
// loopback HTTP client). The relayed packets themselves are DERP's framing,
// decoded by tailscale's derp package, and WireGuard's.

func FuzzParseRelayEndpoint(f *testing.F) {
	f.Add("nodekey:" + "11" + "22334455667788990011223344556677889900112233445566778899001122" + "@198.51.100.1:41641")
	f.Add("nodekey:abc@[::1]:1")
	f.Add("198.51.100.1:41641")
	f.Add("nodekey:@")
	f.Fuzz(func(t *testing.T, s string) {
		pub, direct, keyed, err := parseRelayEndpoint(s)
		if err != nil || !keyed {
			return
		}
		if pub.IsZero() {
			t.Fatalf("%q: accepted a zero key", s)
		}
		if direct.IsValid() && (direct.Port() == 0 || direct.Addr().IsUnspecified() || direct.Addr().Is4In6()) {
			t.Fatalf("%q: accepted unusable address %v", s, direct)
		}
		// What we accept prints to a string that parses to the same thing.
		p2, d2, _, err := parseRelayEndpoint(relayEndpointString(pub, direct))
		if err != nil || p2 != pub || d2 != direct {
			t.Fatalf("%q: round trip gave %v %v %v", s, p2, d2, err)
		}
	})
}

func FuzzParseAdmitRequest(f *testing.F) {
	f.Add([]byte(`{"NodePublic":"nodekey:1122334455667788990011223344556677889900112233445566778899001122","Source":"127.0.0.1"}`))
	f.Add([]byte(`{"NodePublic":"nodekey:0000000000000000000000000000000000000000000000000000000000000000"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"NodePublic":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := parseAdmitRequest(b)
		if err == nil && pub.IsZero() {
			t.Fatalf("%q: accepted a zero key", b)
		}
	})
}
