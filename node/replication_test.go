package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
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
	_, err = frames(ctx, dcUS, "store", opReplicate, replPull{})
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

// The uplink budget paces segments: 1.5 MB at 1 MB/s (burst a quarter of
// it) cannot go out in much under 1.25 s, and without a budget nothing
// waits.
func TestReplicationUplinkBudget(t *testing.T) {
	r := newReplSource(nil, ReplicationConfig{UplinkBytesPerSec: 1_000_000})
	ctx := context.Background()
	began := time.Now()
	for range 6 {
		if err := r.pace(ctx, 250_000); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took < 1200*time.Millisecond {
		t.Errorf("1.5 MB went out in %v under a 1 MB/s budget", took)
	}
	free := newReplSource(nil, ReplicationConfig{})
	began = time.Now()
	if err := free.pace(ctx, 100<<20); err != nil || time.Since(began) > time.Second {
		t.Errorf("unlimited: %v after %v", err, time.Since(began))
	}
	// A cancelled pull stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.pace(cctx, 900_000); err == nil {
		t.Error("pace ignored a cancelled context")
	}
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

// A datacenter's copy of a store's audit journal takes only lines that
// verify and chain on: junk, a wrong count, a gap or a rewritten entry is
// refused with nothing appended; a line cut short by a crash is dropped when
// the copy is opened again, and the chain continues from the last whole one.
func TestAuditReplicaRefusesBrokenChains(t *testing.T) {
	src := t.TempDir()
	j, err := audit.Open(src, audit.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 6 {
		if _, err := j.Append(audit.Event{Actor: "store", Action: "test", Object: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := j.After(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := func(e audit.Entry) []byte {
		b, err := e.Line()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lines := func(es ...audit.Entry) []byte {
		var b []byte
		for _, e := range es {
			b = append(b, line(e)...)
		}
		return b
	}
	dir := t.TempDir()
	a, err := openAuditReplica(dir, "store")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.append(lines(es[0], es[1]), 2); err != nil {
		t.Fatal(err)
	}
	tampered := es[2]
	tampered.Object = "edited"
	for _, bad := range []struct {
		name  string
		b     []byte
		count int
		want  string
	}{
		{"junk", []byte("not json\n"), 1, "audit"},
		{"wrong count", lines(es[2]), 2, "header says 2"},
		{"a gap", lines(es[3]), 1, "does not chain"},
		{"an edited entry", lines(tampered), 1, "hash"},
		{"a replayed entry", lines(es[1]), 1, "does not chain"},
	} {
		if err := a.append(bad.b, bad.count); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error saying %q", bad.name, err, bad.want)
		}
	}
	if a.seq() != 2 {
		t.Fatalf("after refusals the copy holds up to %d, want 2", a.seq())
	}
	// A crash mid-append leaves half a line; reopening cuts it off.
	path := filepath.Join(dir, "store.jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line(es[2])[:20])
	f.Close()
	a, err = openAuditReplica(dir, "store")
	if err != nil || a.seq() != 2 {
		t.Fatalf("reopened after a torn line: seq %d, %v", a.seq(), err)
	}
	if err := a.append(lines(es[2:]...), 4); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := lines(es...); !bytes.Equal(got, want) {
		t.Errorf("the copy is not the journal's lines byte for byte:\n%s\nwant\n%s", got, want)
	}
}

// A store whose journal no longer chains onto the datacenter's copy (it was
// rewritten) is flagged, alarmed and audited once, and its footage is still
// replicated; later pulls ask it for no audit lines.
func TestRewrittenJournalKeepsFootageComing(t *testing.T) {
	newJournal := func(node string, n int) []audit.Entry {
		j, err := audit.Open(t.TempDir(), audit.Options{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for i := range n {
			if _, err := j.Append(audit.Event{Actor: node, Action: "test", Object: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		es, err := j.After(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	lines := func(es ...audit.Entry) []byte {
		var b []byte
		for _, e := range es {
			l, err := e.Line()
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, l...)
		}
		return b
	}
	orig, rewritten := newJournal("store", 4), newJournal("forger", 4)

	cf := newCustodyFixture(t) // the policy's store "store" of praha-1 and its sealed footage
	tr := newTestReplica(t, cf.st)
	r, p, ar, dj, st := tr.r, tr.p, tr.ar, tr.dj, tr.st

	if err := r.apply(p, replItem{Kind: "audit", Count: 2}, lines(orig[:2]...)); err != nil {
		t.Fatal(err)
	}
	// The store now serves a rewritten chain: refused, not fatal to the pull.
	if err := r.apply(p, replItem{Kind: "audit", Count: 2}, lines(rewritten[2:]...)); err != nil {
		t.Fatalf("a rewritten journal failed the pull (footage would stop): %v", err)
	}
	if err := r.apply(p, replItem{Kind: "audit", Count: 1}, lines(rewritten[3])); err != nil {
		t.Fatalf("a rewritten journal failed the second pull: %v", err)
	}
	if ar.seq() != 2 {
		t.Errorf("the copy holds up to %d, want 2 (the rewritten lines refused)", ar.seq())
	}
	// Footage still arrives.
	cam, t0 := cf.rec.Camera, cf.rec.Start
	esum := sha256.Sum256(cf.sealed)
	if err := r.apply(p, replItem{Kind: "epoch", Camera: cam, Start: t0, End: cf.rec.End, SHA256: hex.EncodeToString(esum[:])}, cf.sealed); err != nil {
		t.Fatal(err)
	}
	payload, link := cf.segment(t, cf.signer, 0, t0, [32]byte{})
	sum := sha256.Sum256(payload)
	seg := replItem{Kind: "segment", Camera: cam, Start: t0, End: link.End, EpochStart: t0, SHA256: hex.EncodeToString(sum[:])}
	if err := r.apply(p, seg, payload); err != nil {
		t.Fatalf("segment after the journal was flagged: %v", err)
	}
	if got, err := st.Segments(cam, t0, t0.Add(time.Minute)); err != nil || len(got) != 1 {
		t.Errorf("segments held after the flag: %d, %v; want 1", len(got), err)
	}
	q, err := r.pullRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	if q.AuditSeq != math.MaxUint64 {
		t.Errorf("a flagged store is asked for audit after %d, want none", q.AuditSeq)
	}
	if _, ok := q.Cameras[cam]; !ok {
		t.Errorf("the pull request does not name the camera held: %+v", q)
	}
	// The alarm: status, log and this node's journal, each once.
	ss := r.status()
	if len(ss) != 1 || !strings.Contains(ss[0].AuditAlarm, "does not chain") {
		t.Errorf("status %+v, want an audit alarm", ss)
	}
	alarms := 0
	for _, l := range *tr.logged {
		if strings.Contains(l, "AUDIT ALARM") {
			alarms++
		}
	}
	es, err := dj.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	audited := 0
	for _, e := range es {
		if e.Action == "audit-replica" && e.Object == "store" && e.Decision == audit.Deny {
			audited++
		}
	}
	if alarms != 1 || audited != 1 {
		t.Errorf("alarm logged %d times and audited %d times, want once each (log %q)", alarms, audited, *tr.logged)
	}
}
