package mesh

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestParseGossipMeta(t *testing.T) {
	cases := []struct {
		in    string
		ep    string // "" means none
		cands string // space-separated
	}{
		{`{"ep":"127.0.0.1:51820"}`, "127.0.0.1:51820", ""},
		{`{"ep":"[2001:db8::1]:7"}`, "[2001:db8::1]:7", ""},
		{`{"ep":"[::ffff:10.0.0.1]:9"}`, "10.0.0.1:9", ""},
		{`{"ep":"0.0.0.0:51820"}`, "", ""},
		{`{"ep":"127.0.0.1:0"}`, "", ""},
		{`{"ep":"224.0.0.1:5"}`, "", ""},
		{`{"ep":"[fe80::1%eth0]:5"}`, "", ""},
		{`{"ep":"host:5"}`, "", ""},
		{`{}`, "", ""},
		{`not json`, "", ""},
		{``, "", ""},
		// Candidates: junk dropped, duplicates dropped, at most 8 kept.
		{`{"c":["198.51.100.7:41641","10.0.0.2:41641","junk","0.0.0.0:1","[ff02::1]:5","10.0.0.2:41641","[fd00::2]:41641"]}`,
			"", "198.51.100.7:41641 10.0.0.2:41641 [fd00::2]:41641"},
		{`{"ep":"192.0.2.1:1","c":["1.0.0.1:1","1.0.0.2:1","1.0.0.3:1","1.0.0.4:1","1.0.0.5:1","1.0.0.6:1","1.0.0.7:1","1.0.0.8:1","1.0.0.9:1"]}`,
			"192.0.2.1:1", "1.0.0.1:1 1.0.0.2:1 1.0.0.3:1 1.0.0.4:1 1.0.0.5:1 1.0.0.6:1 1.0.0.7:1 1.0.0.8:1"},
		{`{"c":"198.51.100.7:41641"}`, "", ""},
		{`{"c":[1,2]}`, "", ""},
	}
	for _, tc := range cases {
		ep, cands, ok := parseGossipMeta([]byte(tc.in))
		got, gotC := "", ""
		if ep.IsValid() {
			got = ep.String()
		}
		var cs []string
		for _, c := range cands {
			cs = append(cs, c.String())
		}
		gotC = strings.Join(cs, " ")
		if got != tc.ep || gotC != tc.cands || ok != (tc.ep != "" || tc.cands != "") {
			t.Errorf("parseGossipMeta(%q) = %q %q %v, want %q %q", tc.in, got, gotC, ok, tc.ep, tc.cands)
		}
	}
}

func TestEncodeGossipMetaFits(t *testing.T) {
	var cands []netip.AddrPort
	for i := range maxCandidates {
		cands = append(cands, netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:ffff:ffff:ffff:ffff:ffff:%x]:65535", 0xff00+i)))
	}
	ep := netip.MustParseAddrPort("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
	b := encodeGossipMeta(ep, cands)
	if len(b) == 0 || len(b) > memberlist.MetaMaxSize {
		t.Fatalf("meta of %d bytes", len(b))
	}
	gotEp, got, ok := parseGossipMeta(b)
	if !ok || gotEp != ep || len(got) == 0 || !slices.Equal(got, cands[:len(got)]) {
		t.Fatalf("round trip: %v %v %v", gotEp, got, ok)
	}
	if encodeGossipMeta(netip.AddrPort{}, nil) != nil {
		t.Fatal("empty meta encoded")
	}
}

func FuzzParseGossipMeta(f *testing.F) {
	f.Add([]byte(`{"ep":"127.0.0.1:51820"}`))
	f.Add([]byte(`{"ep":"[::1]:1"}`))
	f.Add([]byte(`{"ep":null}`))
	f.Add([]byte(`{"c":["198.51.100.7:41641","[fd00::2]:1","x"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ep, cands, ok := parseGossipMeta(b)
		if !ok {
			if ep.IsValid() || len(cands) > 0 {
				t.Fatalf("refused meta returned values from %q", b)
			}
			return
		}
		if len(cands) > maxCandidates {
			t.Fatalf("%d candidates from %q", len(cands), b)
		}
		all := cands
		if ep.IsValid() {
			all = append(all, ep)
		}
		for _, a := range all {
			if !usableAddrPort(a) || a.Addr().Is4In6() {
				t.Fatalf("accepted unusable address %v from %q", a, b)
			}
			if back, err := netip.ParseAddrPort(a.String()); err != nil || back != a {
				t.Fatalf("accepted address does not round-trip: %v", err)
			}
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
