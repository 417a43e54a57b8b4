package mesh

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
)

func TestParseGossipMeta(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" means refused
	}{
		{`{"ep":"127.0.0.1:51820"}`, "127.0.0.1:51820"},
		{`{"ep":"[2001:db8::1]:7"}`, "[2001:db8::1]:7"},
		{`{"ep":"[::ffff:10.0.0.1]:9"}`, "10.0.0.1:9"},
		{`{"ep":"0.0.0.0:51820"}`, ""},
		{`{"ep":"127.0.0.1:0"}`, ""},
		{`{"ep":"224.0.0.1:5"}`, ""},
		{`{"ep":"[fe80::1%eth0]:5"}`, ""},
		{`{"ep":"host:5"}`, ""},
		{`{}`, ""},
		{`not json`, ""},
		{``, ""},
	}
	for _, tc := range cases {
		ep, ok := parseGossipMeta([]byte(tc.in))
		got := ""
		if ok {
			got = ep.String()
		}
		if got != tc.want {
			t.Errorf("parseGossipMeta(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseGossipMeta(f *testing.F) {
	f.Add([]byte(`{"ep":"127.0.0.1:51820"}`))
	f.Add([]byte(`{"ep":"[::1]:1"}`))
	f.Add([]byte(`{"ep":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ep, ok := parseGossipMeta(b)
		if !ok {
			return
		}
		if !ep.IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() || ep.Addr().IsMulticast() || ep.Addr().Is4In6() {
			t.Fatalf("accepted unusable endpoint %v from %q", ep, b)
		}
		if _, err := netip.ParseAddrPort(ep.String()); err != nil {
			t.Fatalf("accepted endpoint does not round-trip: %v", err)
		}
	})
}

// FuzzUAPI feeds arbitrary bytes to the read-only UAPI server: it must never
// panic, never change the peer set and never reveal the private key.
func FuzzUAPI(f *testing.F) {
	m := newTestMesh(f, "fuzz", false)
	f.Add([]byte("get=1\n\n"))
	f.Add([]byte("set=1\npublic_key=00\n\n"))
	f.Add([]byte("get=1\nx"))
	f.Add([]byte("set=1\nprivate_key=" + "11" + "\n\nget=1\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() { serveUAPI(c2, m.dev); close(done) }()
		var out []byte
		readDone := make(chan struct{})
		go func() { out, _ = io.ReadAll(c1); close(readDone) }()
		c1.Write(in)
		c1.Close()
		<-done
		<-readDone
		if bytes.Contains(out, []byte("private_key")) {
			t.Fatalf("UAPI revealed the private key for input %q", in)
		}
		if n := len(m.PeerList()); n != 0 {
			t.Fatalf("UAPI input %q changed peers", in)
		}
		st, err := m.stats()
		if err != nil || len(st.peers) != 0 {
			t.Fatalf("UAPI input %q added a WireGuard peer", in)
		}
	})
}
