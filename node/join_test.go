package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

func waitTrue(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	nodetest.WaitTrue(t, d, what, cond)
}

// acme is a founded federation: admin alice, dc-a running, site praha-1.
type acme struct {
	admin  *keys.AdminKey
	dc     *Node
	tmp    string
	listen func() netip.AddrPort
	// recovery is the controller's recovery key (armored, unprotected),
	// made apart from every node; Init took only its public half.
	recovery []byte
}

func foundAcme(t testing.TB, ctx context.Context) acme {
	t.Helper()
	return foundAcmeWith(t, ctx, nil)
}

// foundAcmeWith is foundAcme with a say in dc-a's Config.
func foundAcmeWith(t testing.TB, ctx context.Context, tweak func(*Config)) acme {
	t.Helper()
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	f := acme{admin: admin, tmp: t.TempDir(), listen: func() netip.AddrPort {
		p, _ := nodetest.FreeUDPPort()
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	}}
	cfg := Config{Dir: filepath.Join(f.tmp, "dc-a"), Name: "dc-a", Listen: f.listen(), Logf: testLogf(t, "dc-a")}
	// The recovery key is made apart from any node, as custos recovery
	// keygen does on the admin's machine; the test keeps it in memory.
	rk, err := keys.NewCustodianKey("recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	if f.recovery, err = rk.ArmoredRecoveryKey(); err != nil {
		t.Fatal(err)
	}
	if err = Init(cfg, InitOptions{Federation: "acme", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint(),
		Recovery: rk.Custodian().ArmoredPublicKey()}); err != nil {
		t.Fatal(err)
	}
	useFederation(t, cfg.Dir)
	if tweak != nil {
		tweak(&cfg)
	}
	if f.dc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.dc.Close() })
	if res, err := SubmitVia(ctx, cfg.Dir, signed(t, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}})); err != nil || !res.Applied {
		t.Fatalf("site: %+v %v", res, err)
	}
	return f
}

func TestInviteJoinRevoke(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	admin, dc, dcDir, tmp, listen := f.admin, f.dc, f.dc.cfg.Dir, f.tmp, f.listen
	now := time.Now()
	inv, err := MakeInvite(ctx, dcDir, admin, "alice", InviteSpec{Role: policy.RoleStore, Name: "store-praha-1", Site: "praha-1", Expires: now.Add(time.Hour)}, now)
	token := inv.Token
	if err != nil {
		t.Fatal(err)
	}

	// Bad tokens are refused before anything is sent.
	tok, err := DecodeToken(token, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeToken(token, now.Add(2*time.Hour)); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	body, sig, _ := strings.Cut(strings.TrimPrefix(token, tokenPrefix), ".")
	flipped := []byte(body)
	flipped[10] ^= 1
	if _, err := DecodeToken(tokenPrefix+string(flipped)+"."+sig, now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("altered token: %v", err)
	}
	for _, junk := range []string{"", "custos1.", "custos1.x.y", "nonsense", tokenPrefix + strings.Repeat("A", maxToken)} {
		if _, err := DecodeToken(junk, now); !errors.Is(err, ErrBadToken) {
			t.Errorf("junk token %.20q: %v", junk, err)
		}
	}

	// Join, then start the store: it reaches dc-a through the token's seed,
	// receives the policy, and dc-a's leader adds it as a non-voter.
	stDir := filepath.Join(tmp, "store-praha-1")
	stCfg := Config{Dir: stDir, Name: "store-praha-1", Listen: listen(), Logf: func(f string, a ...any) { t.Logf("store: "+f, a...) }}
	// A port the node could not run on fails the join before the token is
	// spent: the same token then joins.
	busy, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(stCfg.Listen.Port())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareJoin(ctx, stCfg, tok); err == nil || !strings.Contains(err.Error(), "the token is not spent") {
		t.Fatalf("join on a busy port: %v", err)
	}
	busy.Close()
	res, err := PrepareJoin(ctx, stCfg, tok)
	if err != nil || !res.Applied {
		t.Fatalf("join: %+v %v", res, err)
	}
	// The same token again: refused, and the refusal is audited on dc-a.
	res, err = PrepareJoin(ctx, Config{Dir: filepath.Join(tmp, "thief"), Name: "thief", Listen: listen()}, tok)
	if err != nil || res.Applied || !strings.Contains(res.Reason, "already used") {
		t.Fatalf("second use of a token: %+v %v", res, err)
	}
	store, err := New(stCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitTrue(t, 20*time.Second, "the store to hold the policy with itself in it", func() bool {
		st := store.Policy()
		return st != nil && st.Nodes["store-praha-1"] != nil && st.Sites["praha-1"] != nil
	})
	waitTrue(t, 10*time.Second, "dc-a's Raft to hold the store as a non-voter", func() bool {
		for _, m := range dc.raft.Status().Members {
			if m.ID == store.Mesh().PublicKey().String() && !m.Voter {
				return true
			}
		}
		return false
	})
	// A command submitted on the store is forwarded to the leader.
	if res, err := SubmitVia(ctx, stDir, signed(t, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}})); err != nil || !res.Applied {
		t.Fatalf("submit through the store: %+v %v", res, err)
	}
	waitTrue(t, 10*time.Second, "the store to apply its own forwarded command", func() bool { return store.Policy().Sites["brno-1"] != nil })

	// Revoke the store: dc-a drops it from the mesh within 2 s.
	if res, err := SubmitVia(ctx, dcDir, signed(t, admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: "store-praha-1"})); err != nil || !res.Applied {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	revoked := time.Now()
	waitTrue(t, 2*time.Second, "dc-a to drop the revoked store", func() bool {
		_, ok := dc.Mesh().PeerByAddr(store.Mesh().Addr())
		return !ok
	})
	t.Logf("revoked store dropped by dc-a after %v", time.Since(revoked).Round(time.Millisecond))
}
