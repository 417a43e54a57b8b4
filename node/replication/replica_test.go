package replication

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy/audit"
)

// A datacenter checks every seal on arrival: an epoch record or segment
// that a store of the site did not seal is never stored, is alarmed and
// audited, and is skipped (the next pull's cursor is past it) so the
// store's later footage keeps coming; the store's own footage is stored.
func TestReplicaRefusesFootageNotSealedByTheStore(t *testing.T) {
	f := nodetest.NewCustody(t)
	tr := newTestReplica(t, f.St)
	r, p, st, dj := tr.r, tr.p, tr.st, tr.dj
	item := func(kind string, start, end, epoch time.Time, b []byte) replItem {
		sum := sha256.Sum256(b)
		return replItem{Kind: kind, Camera: f.Rec.Camera, Start: start, End: end, EpochStart: epoch, SHA256: hex.EncodeToString(sum[:])}
	}
	cam, e0 := f.Rec.Camera, f.Rec.Start

	// A record for the next epoch, made from the custodians' public keys
	// and sealed with a key that is not the store's: refused, and so are
	// the segments that name it.
	k := keys.NewNodePrivate()
	forger, _ := keys.NewCustodySigner("store", &k)
	e1 := f.Rec.End
	minted, err := keys.NewEpochKey(cam, e1, keys.DefaultEpochLength, []keys.Custodian{nodetest.Custodian(t, "dc-a"), nodetest.Custodian(t, "dc-b")})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := keys.SealEpochRecord(forger, minted)
	if err := r.apply(p, item("epoch", e1, minted.End, e1, mb), mb); err != nil {
		t.Fatalf("a forged record failed the pull: %v", err)
	}
	if _, err := st.Epoch(cam, e1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the forged record was stored: %v", err)
	}
	// The store's own record and segment are stored.
	if err := r.apply(p, item("epoch", e0, f.Rec.End, e0, f.Sealed), f.Sealed); err != nil {
		t.Fatal(err)
	}
	good, gl := f.Segment(t, f.Signer, 0, e0.Add(time.Second), [32]byte{})
	if err := r.apply(p, item("segment", gl.Start, gl.End, e0, good), good); err != nil {
		t.Fatal(err)
	}
	// A segment sealed by the forger in the store's name, and the store's
	// own segment filed under another time: refused.
	forged, fl := f.Segment(t, forger, 1, gl.End, gl.Hash())
	moved := item("segment", gl.Start.Add(time.Minute), gl.End.Add(time.Minute), e0, good)
	for _, c := range []struct {
		it replItem
		b  []byte
	}{{item("segment", fl.Start, fl.End, e0, forged), forged}, {moved, good}} {
		if err := r.apply(p, c.it, c.b); err != nil {
			t.Fatalf("a refused segment failed the pull: %v", err)
		}
	}
	segs, _ := st.Segments(cam, e0, e0.Add(time.Hour))
	if len(segs) != 1 || !segs[0].Start.Equal(gl.Start) {
		t.Fatalf("the replica holds %+v, want only the store's segment", segs)
	}
	q, err := r.pullRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := q.Cameras[cam]; !c.Epoch.Equal(e1) || !c.Segment.Equal(moved.Start) {
		t.Errorf("cursor %+v, want it past the refused record (%s) and segment (%s)", c, stamp(e1), stamp(moved.Start))
	}
	ss := r.Status()
	if len(ss) != 1 || ss[0].Refused != 3 || !strings.Contains(ss[0].RefusedLast, "signed link says") {
		t.Errorf("status %+v, want 3 refusals", ss)
	}
	es, _ := dj.Since(time.Time{})
	audited := 0
	for _, e := range es {
		if e.Action == "replica-refused" && e.Decision == audit.Deny {
			audited++
		}
	}
	if audited != 3 || len(*tr.logged) != 3 {
		t.Errorf("%d refusals audited, %d logged; want 3 each", audited, len(*tr.logged))
	}
	// Another store of the site, or a store of another site, cannot stand
	// in for the store either: a segment naming another store is checked
	// against that store's key.
	s2, _ := f.Signer.Named("brno")
	other, ol := f.Segment(t, s2, 1, gl.End, gl.Hash())
	if err := r.apply(p, item("segment", ol.Start, ol.End, e0, other), other); err != nil {
		t.Fatal(err)
	}
	if segs, _ := st.Segments(cam, e0, e0.Add(time.Hour)); len(segs) != 1 {
		t.Errorf("a segment sealed as another site's store was stored")
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

	cf := nodetest.NewCustody(t) // the policy's store "store" of praha-1 and its sealed footage
	tr := newTestReplica(t, cf.St)
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
	cam, t0 := cf.Rec.Camera, cf.Rec.Start
	esum := sha256.Sum256(cf.Sealed)
	if err := r.apply(p, replItem{Kind: "epoch", Camera: cam, Start: t0, End: cf.Rec.End, SHA256: hex.EncodeToString(esum[:])}, cf.Sealed); err != nil {
		t.Fatal(err)
	}
	payload, link := cf.Segment(t, cf.Signer, 0, t0, [32]byte{})
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
	ss := r.Status()
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

// An erased range stays erased on a datacenter: a store that offers its
// footage again (restored from a backup made before the erasure) has the
// segments refused as final — no error that would stall the pull, no
// alarm, and the cursor moves past them so later footage keeps coming.
func TestReplicaSkipsErasedFootage(t *testing.T) {
	f := nodetest.NewCustody(t)
	tr := newTestReplica(t, f.St)
	r, p, st := tr.r, tr.p, tr.st
	item := func(kind string, start, end, epoch time.Time, b []byte) replItem {
		sum := sha256.Sum256(b)
		return replItem{Kind: kind, Camera: f.Rec.Camera, Start: start, End: end, EpochStart: epoch, SHA256: hex.EncodeToString(sum[:])}
	}
	cam, e0 := f.Rec.Camera, f.Rec.Start
	if err := r.apply(p, item("epoch", e0, f.Rec.End, e0, f.Sealed), f.Sealed); err != nil {
		t.Fatal(err)
	}
	first, l0 := f.Segment(t, f.Signer, 0, e0.Add(time.Second), [32]byte{})
	erased, l1 := f.Segment(t, f.Signer, 1, l0.End, l0.Hash())
	later, l2 := f.Segment(t, f.Signer, 2, l1.End, l1.Hash())
	if err := st.AddTombstone(cam, l1.Start, l1.End); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		l keys.SegmentLink
		b []byte
	}{{l0, first}, {l1, erased}, {l2, later}} {
		if err := r.apply(p, item("segment", c.l.Start, c.l.End, e0, c.b), c.b); err != nil {
			t.Fatalf("segment %d: %v", c.l.Seq, err)
		}
	}
	segs, _ := st.Segments(cam, e0, e0.Add(time.Hour))
	if len(segs) != 2 || !segs[0].Start.Equal(l0.Start) || !segs[1].Start.Equal(l2.Start) {
		t.Fatalf("the replica holds %+v; want segments 0 and 2, not the erased 1", segs)
	}
	if ss := r.Status(); len(ss) != 1 || ss[0].Refused != 0 || len(*tr.logged) != 0 {
		t.Errorf("an erased segment was alarmed as a refusal: %+v, logged %v", ss, *tr.logged)
	}
	// Offered again alone (the store's cursor sits just before it): skipped,
	// and the next pull asks for what follows it.
	p2 := &puller{store: p.store, site: p.site, audit: p.audit}
	if err := r.apply(p2, item("segment", l1.Start, l1.End, e0, erased), erased); err != nil {
		t.Fatal(err)
	}
	if c := p2.refused[cam]; !c.Segment.Equal(l1.Start) {
		t.Errorf("cursor past the erased segment: %+v", c)
	}
}
