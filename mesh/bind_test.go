package mesh

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/keys"
)

func TestPathFailoverAndRecovery(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, ab := newRelayMesh(t, "a", r, false)
	b, bb := newRelayMesh(t, "b", r, false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	rx := streamCounter(t, a, 90)
	streamTo(t, b, a, 90)
	waitUntil(t, 15*time.Second, "data flowing", func() bool { return rx.Load() > 256<<10 })

	// sent reports b's bytes on each path over a 500 ms window.
	sent := func() (direct, relayed uint64) {
		s0 := b.Relay().Stats()
		time.Sleep(500 * time.Millisecond)
		s1 := b.Relay().Stats()
		return s1.DirectTxBytes - s0.DirectTxBytes, s1.RelayTxBytes - s0.RelayTxBytes
	}
	waitUntil(t, 5*time.Second, "b streaming direct", func() bool { d, r := sent(); return d > 64<<10 && r == 0 })

	// A firewall appears between them: the stream must move to the relay.
	ab.blocked.Store(true)
	bb.blocked.Store(true)
	blocked := time.Now()
	at := rx.Load()
	waitUntil(t, 20*time.Second, "the stream carried on over the relay", func() bool {
		return rx.Load() > at+256<<10 && b.Relay().Stats().RelayTxBytes > 256<<10
	})
	t.Logf("stream resumed over the relay %v after direct UDP was blocked", time.Since(blocked).Round(10*time.Millisecond))

	// It goes away: the probes find the direct path again.
	ab.blocked.Store(false)
	bb.blocked.Store(false)
	opened := time.Now()
	waitUntil(t, 10*time.Second, "b streaming direct again", func() bool { d, r := sent(); return d > 64<<10 && r == 0 })
	t.Logf("back on the direct path %v after it reopened", time.Since(opened).Round(10*time.Millisecond))
}

func TestRelayBindCloseOpenCycles(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	priv := keys.NewNodePrivate()
	r.setMember(priv.Public(), true)
	b, err := newRelayBind(newUDPBind(), priv, []Relay{r.relay()}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		fns, _, err := b.Open(0)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
			t.Fatalf("second open: err = %v, want ErrBindAlreadyOpen", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(fns))
		for _, fn := range fns {
			wg.Go(func() {
				size := b.BatchSize()
				bufs, sizes, eps := make([][]byte, size), make([]int, size), make([]conn.Endpoint, size)
				for j := range bufs {
					bufs[j] = make([]byte, 2048)
				}
				for {
					if _, err := fn(bufs, sizes, eps); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		if i%2 == 0 {
			waitUntil(t, 5*time.Second, "relay connected", func() bool { return b.Stats().RelayConnected })
		}
		done := make(chan struct{})
		go func() { b.Close(); wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("cycle %d: Close did not unblock the receive funcs", i)
		}
		close(errs)
		for err := range errs {
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("cycle %d: receive func returned %v, want net.ErrClosed", i, err)
			}
		}
	}
	b.destroy()
	if _, _, err := b.Open(0); err == nil {
		b.Close()
		t.Fatal("a destroyed bind opened")
	}
}

func TestRelayMeshDownUpCycles(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, true)
	b, _ := newRelayMesh(t, "b", r, true)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, b, 80)
	echoRoundTrip(t, a, b, 64<<10)
	for i := range 10 {
		done := make(chan error, 1)
		go func() {
			if err := a.dev.Down(); err != nil {
				done <- err
				return
			}
			done <- a.dev.Up()
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: down/up hung", i)
		}
	}
	waitUntil(t, 10*time.Second, "a back on the relay", func() bool { return a.Relay().Stats().RelayConnected })
	echoRoundTrip(t, a, b, 64<<10)
}

func TestUAPIShowsRelayEndpointsAndResetKeepsKey(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	sock := t.TempDir() + "/uapi.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, NoGossip: true, UAPI: ln, Relays: []Relay{r.relay()}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	withAddr := keys.NewNodePrivate().Public()
	relayOnly := keys.NewNodePrivate().Public()
	direct := netip.MustParseAddrPort("192.0.2.7:51820")
	must(t, a.SetPeers([]Peer{{Name: "b", PublicKey: withAddr, Endpoint: direct}, {Name: "c", PublicKey: relayOnly}}))

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "get=1\n\n")
	get := readUAPI(t, c)
	if strings.Contains(get, "nodekey:") {
		t.Fatalf("uapi get shows keyed endpoints, which wg show cannot resolve:\n%s", get)
	}
	if strings.Count(get, "endpoint=") != 1 || !strings.Contains(get, "endpoint="+direct.String()+"\n") {
		t.Fatalf("uapi get: want one endpoint line, %s (the relay-only peer has none):\n%s", direct, get)
	}

	// The watchdog restarts a session with the endpoint the device reports:
	// it must keep the peer's key, or the relay could no longer reach it.
	for _, k := range []keys.NodePublic{withAddr, relayOnly} {
		st, err := a.stats()
		if err != nil {
			t.Fatal(err)
		}
		a.resetSession(k, st.peers[k].Endpoint)
		st, err = a.stats()
		if err != nil {
			t.Fatal(err)
		}
		if got, _, keyed, _ := parseRelayEndpoint(st.peers[k].Endpoint); !keyed || got != k {
			t.Fatalf("after a session reset the endpoint is %q; want it keyed to %s", st.peers[k].Endpoint, k)
		}
	}
	// A removed peer is forgotten by the bind.
	must(t, a.SetPeers([]Peer{{Name: "b", PublicKey: withAddr, Endpoint: direct}}))
	if _, ok := a.relay.peers.Load().byKey[derpKey(relayOnly)]; ok {
		t.Fatal("the bind still knows a removed peer")
	}
}

func TestParseRelayEndpoint(t *testing.T) {
	pub := keys.NewNodePrivate().Public()
	cases := []struct {
		in     string
		keyed  bool
		direct string
		bad    bool
	}{
		{pub.String(), true, "", false},
		{pub.String() + "@198.51.100.1:41641", true, "198.51.100.1:41641", false},
		{pub.String() + "@[2001:db8::1]:41641", true, "[2001:db8::1]:41641", false},
		{pub.String() + "@[::ffff:198.51.100.1]:5", true, "198.51.100.1:5", false},
		{"198.51.100.1:41641", false, "", false},
		{pub.String() + "@198.51.100.1:0", true, "", true},
		{pub.String() + "@0.0.0.0:5", true, "", true},
		{pub.String() + "@[fe80::1%eth0]:5", true, "", true},
		{pub.String() + "@relay.example:5", true, "", true},
		{"nodekey:abc", true, "", true},
		{"nodekey:" + strings.Repeat("0", 64), true, "", true},
	}
	for _, tc := range cases {
		got, direct, keyed, err := parseRelayEndpoint(tc.in)
		if keyed != tc.keyed || (err != nil) != tc.bad {
			t.Errorf("%q: keyed %v err %v; want keyed %v bad %v", tc.in, keyed, err, tc.keyed, tc.bad)
			continue
		}
		if tc.bad || !tc.keyed {
			continue
		}
		if got != pub {
			t.Errorf("%q: key %v", tc.in, got)
		}
		if want := tc.direct; (want == "" && direct.IsValid()) || (want != "" && direct.String() != want) {
			t.Errorf("%q: direct %v, want %q", tc.in, direct, want)
		}
	}
	// The mesh's string parses back.
	d := netip.MustParseAddrPort("203.0.113.9:7")
	if got, dd, _, err := parseRelayEndpoint(relayEndpointString(pub, d)); err != nil || got != pub || dd != d {
		t.Fatalf("round trip: %v %v %v", got, dd, err)
	}
}

func TestDerpKeyRoundTrip(t *testing.T) {
	pub := keys.NewNodePrivate().Public()
	dk := derpKey(pub)
	raw := pub.Raw32()
	if dk.IsZero() || fromDerpKey(dk) != pub || !bytes.Equal(dk.AppendTo(nil), raw[:]) {
		t.Fatalf("derpKey(%v) = %v", pub, dk)
	}
}

func TestAmbiguousCandidateStaysKeyless(t *testing.T) {
	b, err := newRelayBind(newUDPBind(), keys.NewNodePrivate(), []Relay{{Name: "x", URL: "http://127.0.0.1:1/derp"}}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.destroy()
	shared := "@198.51.100.1:41641"
	p1, p2 := keys.NewNodePrivate().Public(), keys.NewNodePrivate().Public()
	for _, p := range []keys.NodePublic{p1, p2} {
		if _, err := b.ParseEndpoint(p.String() + shared); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.peers.Load().byAddr); n != 0 {
		t.Fatalf("an address two peers claim maps to one of them (%d entries)", n)
	}
	b.forget(p2)
	if got := b.peers.Load().byAddr[netip.MustParseAddrPort(shared[1:])]; got == nil || got.via.p.pub != p1 {
		t.Fatal("once unambiguous, the address does not map to its peer")
	}
}
