package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// A store's recordings reach dc-a and dc-b byte for byte (DESIGN §4
// invariant 10), with the epoch records and the store's audit journal; a
// datacenter outside the policy's jurisdictions gets nothing — no segment,
// no key share — and the refusal is audited (invariant 9); a datacenter
// that was down catches up from where it stopped; and the store keeps every
// segment it replicated.
func TestReplicationToDatacenters(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 170*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	dcB := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	dcUS := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-us", Jurisdiction: "US"})
	if j := f.dc.policy.State().Nodes["dc-us"].Jurisdiction; j != "US" {
		t.Fatalf("dc-us has jurisdiction %q", j)
	}
	cam := "praha-1/entrance"
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	dirOf := map[string]string{"dc-a": f.dc.cfg.Dir, "dc-b": dcB.cfg.Dir}
	replicated := func(dc string, segs int) func() bool {
		return func() bool {
			s, err := st1.Status()
			if err != nil {
				return false
			}
			for _, r := range s.Replication {
				if r.Camera == cam && r.Datacenter == dc && !r.UpTo.IsZero() {
					return countSegments(t, MediaDir(dirOf[dc])) >= segs
				}
			}
			return false
		}
	}
	waitTrue(t, 90*time.Second, "dc-a and dc-b to hold 4 replicated segments", func() bool {
		return replicated("dc-a", 4)() && replicated("dc-b", 4)()
	})

	// dc-b goes down; the store keeps recording and dc-a keeps up.
	dcBCfg := dcB.cfg
	if err := dcB.Close(); err != nil {
		t.Fatal(err)
	}
	stopped := countSegments(t, MediaDir(dcBCfg.Dir))
	waitTrue(t, 60*time.Second, "dc-a to replicate 4 more segments while dc-b is down", replicated("dc-a", stopped+4))
	s, _ := st1.Status()
	for _, r := range s.Replication {
		t.Logf("while dc-b is down: %s → %s: %s up to %s, lag %.1fs %dB (%d segments)", r.Camera, r.Datacenter, r.State, stamp(r.UpTo), r.LagSeconds, r.LagBytes, r.LagSegments)
		if r.Datacenter == "dc-b" && r.LagSegments == 0 {
			t.Errorf("dc-b is down but shows no lag: %+v", r)
		}
	}
	// dc-b comes back on the same directory and catches up.
	dcB2, err := New(dcBCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dcB2.Close()
	dirOf["dc-b"] = dcBCfg.Dir
	waitTrue(t, 60*time.Second, "dc-b to catch up after its restart", replicated("dc-b", stopped+4))

	// dc-us, outside the EU, holds nothing and no epoch record names it.
	if n := countSegments(t, MediaDir(dcUS.cfg.Dir)); n != 0 {
		t.Errorf("dc-us (jurisdiction US) holds %d segments", n)
	}
	s, _ = st1.Status()
	var refused bool
	for _, r := range s.Replication {
		if r.Datacenter == "dc-us" {
			refused = r.State == "refused" && strings.Contains(r.Error, "jurisdiction US")
		}
	}
	if !refused {
		t.Errorf("the store's status does not show dc-us refused: %+v", s.Replication)
	}
	// dc-us does not pull (it knows it may not hold replicas); if it did,
	// the store would refuse it.
	_, err = frames(ctx, dcUS, "store", opReplicate, map[string]any{"cameras": nil, "audit_seq": 0, "wait_ms": 0})
	wantDenied(t, "dc-us pulling", err, "jurisdiction US")
	waitTrue(t, 30*time.Second, "the store to audit refusing dc-us", func() bool {
		es, _ := st1.Audit(time.Time{})
		for _, e := range es {
			if e.Action == "replicate" && e.Actor == "dc-us" && e.Decision == "deny" && strings.Contains(e.Reason, "jurisdiction US") {
				return true
			}
		}
		return false
	})

	// Stop the store and compare: every segment and epoch record each
	// datacenter holds is the store's, byte for byte, and each holds all
	// of the store's segments up to its newest.
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}
	storeFiles := mediaFiles(t, MediaDir(st1.cfg.Dir))
	for dc, dir := range dirOf {
		got := mediaFiles(t, MediaDir(dir))
		var newest string
		for rel, sum := range got {
			if strings.HasSuffix(rel, ".seg") && rel > newest {
				newest = rel
			}
			if want, ok := storeFiles[rel]; !ok || want != sum {
				t.Errorf("%s holds %s, which the store does not hold with the same bytes", dc, rel)
			}
		}
		missing := 0
		for rel := range storeFiles {
			if _, ok := got[rel]; !ok && (strings.HasSuffix(rel, ".seg") && rel <= newest) {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s lacks %d of the store's segments older than its newest", dc, missing)
		}
		t.Logf("%s holds %d files identical to the store's (%d there)", dc, len(got), len(storeFiles))
	}
	// No key share for dc-us in any epoch record.
	sdb, err := store.Open(MediaDir(st1.cfg.Dir), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	eps, _ := sdb.Epochs(cam, time.Unix(0, 0), time.Now().Add(time.Hour))
	for _, m := range eps {
		b, _ := sdb.Epoch(cam, m.Start)
		rec, err := sealedRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range rec.Shares {
			if sh.Custodian == "dc-us" {
				t.Errorf("epoch record %s holds a share for dc-us", stamp(m.Start))
			}
		}
	}
	storeSegs, _ := sdb.Segments(cam, time.Unix(0, 0), time.Now().Add(time.Hour))
	sdb.Close()
	written := 0
	for rel := range storeFiles {
		if strings.HasSuffix(rel, ".seg") {
			written++
		}
	}
	if len(storeSegs) != written || written < stopped+8 {
		t.Errorf("the store indexes %d segments and holds %d files (want all it wrote, ≥ %d): replication must not delete", len(storeSegs), written, stopped+8)
	}
	// The store's audit journal, replicated, is a byte-exact prefix of it.
	own, err := os.ReadFile(filepath.Join(st1.cfg.Dir, "audit", "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for dc, dir := range dirOf {
		rep, err := os.ReadFile(filepath.Join(dir, "replicas", "audit", "store.jsonl"))
		if err != nil || len(rep) == 0 || !bytes.HasPrefix(own, rep) {
			t.Errorf("%s's replica of the store's audit journal (%d bytes, %v) is not a prefix of the journal (%d bytes)", dc, len(rep), err, len(own))
		}
	}
}

func countSegments(t *testing.T, dir string) int {
	n := 0
	for rel := range mediaFiles(t, dir) {
		if strings.HasSuffix(rel, ".seg") {
			n++
		}
	}
	return n
}

// mediaFiles maps each segment and epoch file under a media directory to
// the SHA-256 of its bytes.
func mediaFiles(t *testing.T, dir string) map[string][32]byte {
	out := map[string][32]byte{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if !strings.HasSuffix(path, ".seg") && !strings.HasSuffix(path, ".epoch") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // written or removed while we walk
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = sha256.Sum256(b)
		return nil
	})
	return out
}

// A command whose outcome was unknown (the leader changed while it was
// being committed) is settled by a linearizable read: applied if its ID is
// in the replay window, and otherwise safe to submit again.
func TestSettleUnknownOutcome(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	done := signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}})
	if res, err := f.dc.Submit(ctx, done); err != nil || !res.Applied {
		t.Fatalf("submit: %+v %v", res, err)
	}
	if res, ok, err := f.dc.settleUnknown(ctx, done); err != nil || !ok || !res.Applied || res.Kind != policy.KindAddSite {
		t.Errorf("an applied command settles as %+v %v %v", res, ok, err)
	}
	fresh := signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "ostrava-1", Jurisdiction: "EU"}})
	if res, ok, err := f.dc.settleUnknown(ctx, fresh); err != nil || ok {
		t.Errorf("a command never submitted settles as applied: %+v %v", res, err)
	}
	// Submitting the applied one again is refused as a replay, not applied twice.
	if res, err := f.dc.Submit(ctx, done); err != nil || res.Applied || !strings.Contains(res.Reason, "replay") {
		t.Errorf("resubmitting an applied command: %+v %v", res, err)
	}
}
