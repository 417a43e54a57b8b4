package membership

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

func TestMembershipFollowsPolicyAndClock(t *testing.T) {
	nodetest.CheckLeaks(t)
	prefix, _ := keys.MeshPrefix("custos") // the node's default federation
	type nd struct {
		m    *mesh.Mesh
		port uint16
	}
	mk := func(name string) nd {
		port, _ := freeUDPPort()
		m, err := mesh.New(mesh.Config{PrivateKey: keys.NewNodePrivate(), Prefix: prefix, ListenPort: port, NoGossip: true, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return nd{m, port}
	}
	dc, store, inst := mk("dc"), mk("store"), mk("inst")
	now := time.Now()
	end := now.Add(1500 * time.Millisecond)
	node := func(name string, n nd, role policy.NodeRole, w policy.Window) *policy.Node {
		return &policy.Node{Name: name, PublicKey: n.m.PublicKey().String(), Role: role, Site: "s1", Jurisdiction: "EU", Window: w,
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.port).String()}
	}
	state := func(storeRevoked bool) *policy.State {
		st := &policy.State{Federation: "t", Nodes: map[string]*policy.Node{
			"dc":    node("dc", dc, policy.RoleDatacenter, policy.Window{}),
			"store": node("store", store, policy.RoleStore, policy.Window{}),
			"inst":  node("inst", inst, policy.RoleInstaller, policy.Window{Until: end}),
		}}
		st.Nodes["store"].Revoked = storeRevoked
		return st
	}
	src := nodetest.NewPolicy(state(false))
	for _, n := range []nd{dc, store, inst} {
		ms := Start(Config{Self: n.m.PublicKey().String(), Policy: src, Mesh: n.m, Now: time.Now, Logf: t.Logf})
		t.Cleanup(ms.Close)
	}
	ln, err := inst.m.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	// Generous: the first WireGuard handshake may need a retry (5 s) on a
	// loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c, err := store.m.DialTCP(ctx, netip.AddrPortFrom(inst.m.Addr(), 80))
	if err != nil {
		t.Fatalf("store → installer inside its window: %v", err)
	}
	defer c.Close()

	// The window ends by each node's own clock: no command, no signal.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	cut := time.Since(end)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection to the installer survived its window: %v", err)
	}
	if cut > 2*time.Second {
		t.Fatalf("installer cut %v after its window ended; want within 2 s", cut)
	}
	t.Logf("installer's connection cut %v after its window ended", cut.Round(time.Millisecond))
	gone := func() bool {
		_, a := dc.m.PeerByAddr(inst.m.Addr())
		_, b := store.m.PeerByAddr(inst.m.Addr())
		return !a && !b && len(inst.m.PeerList()) == 0
	}
	for !gone() {
		if time.Since(end) > 2*time.Second {
			t.Fatal("2 s after its window, the installer is still a peer somewhere (or still has peers)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Revocation arrives as a policy change.
	src.Set(state(true))
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := dc.m.PeerByAddr(store.m.Addr()); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dc kept the revoked store as a peer for 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(store.m.PeerList()) != 0 {
		t.Fatal("the revoked store still has peers")
	}
}

// freeUDPPort returns a UDP port free on 127.0.0.1 a moment ago.
func freeUDPPort() (uint16, error) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port), nil
}
