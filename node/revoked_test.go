package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// A revoked store knows it, says so in its status, stops recording (what
// it recorded stays) and serves nothing to anyone; it still knows after a
// restart. Its peers cut it off as they apply the revocation, before the
// commit could reach its replica, so it learns from the signed revocation
// a peer hands it first, which it checks against its own replica.
func TestRevokedStoreStopsAndSaysSo(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	const cam = "praha-1/entrance"
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	segments := func(n *Node) []store.SegmentMeta {
		segs, _ := n.rec.Store().Segments(cam, time.Time{}, time.Now().Add(time.Hour))
		return segs
	}
	waitTrue(t, 60*time.Second, "the store to record 2 segments", func() bool { return len(segments(st1)) >= 2 })
	if s, _ := st1.Status(); s.Membership == nil || s.Membership.State != StandingMember {
		t.Fatalf("the store's standing before its revocation: %+v", s.Membership)
	}

	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: "store"})); err != nil || !res.Applied {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	revoked := time.Now()
	var m *Membership
	waitTrue(t, 5*time.Second, "the store to know it was revoked", func() bool {
		s, err := st1.Status()
		m = s.Membership
		return err == nil && m != nil && m.State == StandingRevoked
	})
	t.Logf("the store knew %v after the commit, by %s: %s", time.Since(revoked).Round(time.Millisecond), m.Source, m.Detail)
	checkRevokedDetail(t, m, revoked)
	waitTrue(t, 5*time.Second, "the store's recorders to stop", func() bool {
		s, _ := st1.Status()
		return s.Recording != nil && len(s.Recording.Cameras) == 0 && strings.Contains(s.Recording.Waiting, "revoked")
	})
	held := len(segments(st1))
	time.Sleep(2500 * time.Millisecond) // over two segments' worth
	if now := len(segments(st1)); now != held {
		t.Errorf("the revoked store went on recording: %d segments, then %d", held, now)
	}
	if held < 2 {
		t.Errorf("the revoked store holds %d segments; what it recorded must stay", held)
	}
	checkServesNothing(t, st1, f.dc)
	waitTrue(t, 5*time.Second, "dc-a's status to count the store's cut", func() bool {
		s, err := f.dc.Status()
		return err == nil && s.Cuts.Peers == 1 && s.Commands[policy.KindRevokeNode] == 1
	})
	if allow, _ := auditDecisions(t, f.dc, "revocation-notice"); m.Source == "notice" && allow == 0 {
		t.Error("dc-a did not journal the notice it handed over")
	}
	if _, deny := auditDecisions(t, st1, "revoked"); deny != 1 {
		t.Errorf("the store journaled its revocation %d times, want once", deny)
	}

	// A restart: the replica is empty until a leader names the commit
	// index, which no one will; the store still knows, and records nothing.
	cfg := st1.cfg
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	s, err := again.Status()
	if err != nil || s.Membership == nil || s.Membership.State != StandingRevoked {
		t.Fatalf("the restarted store's standing: %+v %v", s.Membership, err)
	}
	checkRevokedDetail(t, s.Membership, revoked)
	time.Sleep(1500 * time.Millisecond)
	if s, _ := again.Status(); s.Recording == nil || len(s.Recording.Cameras) != 0 || len(segments(again)) != held {
		t.Errorf("the restarted revoked store records: %+v, %d segments (had %d)", s.Recording, len(segments(again)), held)
	}
	checkServesNothing(t, again, f.dc)
}

func checkRevokedDetail(t *testing.T, m *Membership, revoked time.Time) {
	t.Helper()
	for _, want := range []string{"this node was revoked from federation acme at ", " by alice", "it no longer records or serves",
		"footage the datacenters had not replicated by then stays on this disk only"} {
		if !strings.Contains(m.Detail, want) {
			t.Errorf("standing %q does not say %q", m.Detail, want)
		}
	}
	if m.By != "alice" || m.At.Before(revoked.Add(-time.Minute)) || m.At.After(revoked) {
		t.Errorf("revoked at %v by %q; the revoke was committed at %v by alice", m.At, m.By, revoked)
	}
}

// checkServesNothing: the revoked node refuses every op (live view,
// segments, epochs, key release, replication: each asks callerName first)
// to everyone, even a datacenter that were still in its mesh.
func checkServesNothing(t *testing.T, revoked, dc *Node) {
	t.Helper()
	_, err := revoked.callerName(revoked.Policy(), dc.Mesh().PublicKey())
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, "no longer records or serves") {
		t.Errorf("an op of %s on the revoked node: %v; want a denial", dc.Name(), err)
	}
}

// When the commit of its revocation never reaches a store's replica (here
// its Raft is stopped first, as a partition or a slow link would), the
// store learns from the signed revocation dc-a hands it before cutting it
// off, checked against the store's own replica; and it stops recording.
// A notice that is not a revocation of this node by a current admin of
// its federation is refused.
func TestRevocationNoticeReachesAStoreTheCommitMissed(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	waitTrue(t, 60*time.Second, "the store to record", func() bool {
		s, _ := st1.Status()
		return s.Recording != nil && len(s.Recording.Cameras) == 1 && s.Recording.Cameras[0].SegmentsWritten > 0
	})
	checkForgedNotices(t, f, st1)

	st1.raft.Close() // its replica stays as it is
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: "store"})); err != nil || !res.Applied {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	revoked := time.Now()
	var m *Membership
	waitTrue(t, 5*time.Second, "the store to know it was revoked", func() bool {
		s, _ := st1.Status()
		m = s.Membership
		return m != nil && m.State == StandingRevoked
	})
	if st1.Policy().Nodes["store"].Revoked {
		t.Fatal("the store's replica applied the revocation; the test needs one that did not")
	}
	t.Logf("the store knew %v after the commit: %s", time.Since(revoked).Round(time.Millisecond), m.Detail)
	checkRevokedDetail(t, m, revoked)
	if m.Source != "notice" || m.Via != "dc-a" || !strings.Contains(m.Detail, "dc-a handed it the signed revocation") {
		t.Errorf("standing %+v; want a notice from dc-a", m)
	}
	waitTrue(t, 5*time.Second, "the store's recorders to stop", func() bool {
		s, _ := st1.Status()
		return s.Recording != nil && len(s.Recording.Cameras) == 0
	})
	checkServesNothing(t, st1, f.dc)
}

// checkForgedNotices: the store refuses, and journals, a notice that is
// no revocation of it by a current admin, and goes on recording.
func checkForgedNotices(t *testing.T, f acme, st1 *Node) {
	t.Helper()
	mallory, err := keys.NewAdminKey("mallory", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	st := st1.Policy()
	for name, c := range map[string]struct {
		env  []byte
		want string
	}{
		"junk":            {[]byte("{not an envelope"), "the revocation"},
		"by a non-user":   {signed(t, mallory, "mallory", &policy.Command{Kind: policy.KindRevokeNode, Name: "store"}).Marshal(), "not a user"},
		"of another node": {signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: "dc-a"}).Marshal(), "does not revoke this node"},
		"not a revocation": {signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}}).Marshal(),
			"does not revoke this node"},
	} {
		if _, err := checkRevocation(st, "store", c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("notice %s: %v; want a refusal saying %q", name, err, c.want)
		}
	}
	err = f.dc.sendNotice(context.Background(), st1.Mesh().PublicKey(), signed(t, mallory, "mallory", &policy.Command{Kind: policy.KindRevokeNode, Name: "store"}).Marshal())
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, "not a user") {
		t.Errorf("a forged notice sent to the store: %v; want a denial", err)
	}
	if _, deny := auditDecisions(t, st1, "revocation-notice"); deny != 1 {
		t.Errorf("the store journaled %d refused notices, want 1", deny)
	}
	if s, _ := st1.Status(); s.Membership.State != StandingMember {
		t.Errorf("after forged notices the store stands %+v", s.Membership)
	}
}
