package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

func relayClients(n *Node) map[keys.NodePublic]bool {
	out := map[keys.NodePublic]bool{}
	for _, k := range n.relaySrv.Clients() {
		out[k] = true
	}
	return out
}

// A datacenter's relay, on its WireGuard port over TCP beside the join
// service, admits the live members of the committed policy and no one
// else: a stranger is refused before the relay greets it, and a member
// that is revoked is dropped within the bound of every revocation.
func TestRelayAdmitsOnlyLiveMembers(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	if f.dc.relaySrv == nil {
		t.Fatal("a datacenter serves no relay")
	}
	st := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{MinFree: -1}
	})
	storeKey := st.Mesh().PublicKey()
	waitTrue(t, 20*time.Second, "the joined store on dc-a's relay", func() bool {
		return relayClients(f.dc)[storeKey] && relayClients(f.dc)[f.dc.Mesh().PublicKey()]
	})
	waitTrue(t, 20*time.Second, "the store to list dc-a as its connected relay", func() bool {
		u := st.Mesh().Underlay()
		return len(u.Relays) == 1 && u.Relays[0].Name == "dc-a" && u.Relays[0].Connected && u.Home == "dc-a"
	})
	// Gossip and the first packets take a moment after the relay is up.
	var s Status
	waitTrue(t, 20*time.Second, "the store's status to show dc-a alive on a path", func() bool {
		var err error
		if s, err = st.Status(); err != nil || s.Underlay == nil || s.Liveness("dc-a") != "alive" {
			return false
		}
		for _, p := range s.Peers {
			if p.Name == "dc-a" {
				return strings.HasPrefix(p.Path, "direct ") || p.Path == "relay dc-a"
			}
		}
		return false
	})

	// A stranger: DERP's handshake proves its key, which no policy names.
	dc, err := derphttp.NewClient(key.NewNode(), "http://"+f.dc.cfg.Listen.String()+"/derp", func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	m, err := dc.Recv()
	if _, greeted := m.(derp.ServerInfoMessage); err == nil || greeted {
		t.Fatalf("dc-a's relay answered a stranger with %T (%v); want the connection closed", m, err)
	}

	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: "store"})); err != nil || !res.Applied {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	revoked := time.Now()
	waitTrue(t, 5*time.Second, "dc-a's relay to drop the revoked store", func() bool { return !relayClients(f.dc)[storeKey] })
	if d := time.Since(revoked); d > 2*time.Second {
		t.Errorf("the revoked store kept its relay connection %v after the commit; the bound is 2 s", d)
	}
	// And it stays out: its reconnects are refused.
	time.Sleep(1500 * time.Millisecond)
	if relayClients(f.dc)[storeKey] {
		t.Error("the revoked store is back on dc-a's relay")
	}
}

// relaysOf names the policy's live datacenters with their endpoints, by
// name, and leaves out stores, revoked datacenters and unusable endpoints.
func TestRelaysOfPolicy(t *testing.T) {
	now := time.Now()
	st := &policy.State{Nodes: map[string]*policy.Node{
		"dc-b":    {Name: "dc-b", Role: policy.RoleDatacenter, Endpoint: "198.51.100.20:51820"},
		"dc-a":    {Name: "dc-a", Role: policy.RoleDatacenter, Endpoint: "[2001:db8::1]:51820"},
		"dc-old":  {Name: "dc-old", Role: policy.RoleDatacenter, Endpoint: "198.51.100.30:51820", Revoked: true},
		"dc-none": {Name: "dc-none", Role: policy.RoleDatacenter, Endpoint: "0.0.0.0:51820"},
		"store":   {Name: "store", Role: policy.RoleStore, Endpoint: "10.1.0.2:51820"},
	}}
	got := relaysOf(st, now)
	if len(got) != 2 || got[0].Name != "dc-a" || got[1].Name != "dc-b" {
		t.Fatalf("relays %+v; want dc-a, dc-b", got)
	}
	if got[0].URL != "http://[2001:db8::1]:51820/derp" || got[1].URL != "http://198.51.100.20:51820/derp" || got[1].STUN.String() != "198.51.100.20:51820" {
		t.Fatalf("relays %+v", got)
	}
}

// A dial to a member that does not answer fails within a few seconds with
// the member's name and what this node knows of the paths to it, never
// with a bare deadline.
func TestDialSaysWhenAPeerIsUnreachable(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	st := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{MinFree: -1}
	})
	// The store admits dc-a once its policy replica names it.
	dcKey := f.dc.Mesh().PublicKey().String()
	waitTrue(t, 30*time.Second, "the store's policy to name dc-a", func() bool { return st.Policy().NameOfKey(dcKey) != "" })
	c, err := f.dc.dialNode(ctx, f.dc.Policy(), "store")
	if err != nil {
		t.Fatalf("dial the running store: %v", err)
	}
	c.Close()
	st.Close()
	start := time.Now()
	_, err = f.dc.dialNode(ctx, f.dc.Policy(), "store")
	took := time.Since(start)
	if err == nil {
		t.Fatal("dialled a stopped store")
	}
	if !strings.Contains(err.Error(), "cannot reach store: nothing heard from it") || !strings.Contains(err.Error(), "relays dc-a connected") {
		t.Fatalf("dial error %q; want the store named and the paths said", err)
	}
	if took > reachWait+5*time.Second {
		t.Fatalf("the dial took %v to give up", took)
	}
}
