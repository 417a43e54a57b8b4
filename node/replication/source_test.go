package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// The uplink budget paces segments: 1.5 MB at 1 MB/s (burst a quarter of
// it) cannot go out in much under 1.25 s, and without a budget nothing
// waits.
func TestReplicationUplinkBudget(t *testing.T) {
	r := NewSource(Config{UplinkBytesPerSec: 1_000_000}, SourceDeps{})
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
	free := NewSource(Config{}, SourceDeps{})
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

// sourceFixture is a store's side without a mesh or a node: store "store"
// of praha-1 under a frozen policy (dc-a in the EU, dc-us in the US), its
// media store and journal, and what it audited and logged.
type sourceFixture struct {
	s       *Source
	media   *store.Store
	journal *countingJournal
	pol     *policy.State
	logged  *[]string
}

// countingJournal is the node's journal, counting its reads.
type countingJournal struct {
	*audit.Journal
	reads int
}

func (j *countingJournal) After(seq uint64, limit int) ([]audit.Entry, error) {
	j.reads++
	return j.Journal.After(seq, limit)
}

// recorded is an answer's frames.
type recorded [][]byte

func (r *recorded) WriteFrame(b []byte) error {
	*r = append(*r, bytes.Clone(b))
	return nil
}

// items decodes an answer: each header, and the payload that follows
// every item but a segment reference.
func (r recorded) items(t *testing.T) (hs []replItem, payloads [][]byte) {
	t.Helper()
	for i := 0; i < len(r); i++ {
		var h replItem
		if err := rpc.DecodeStrict(r[i], &h); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		hs = append(hs, h)
		if h.Kind != "segment" {
			i++
			payloads = append(payloads, r[i])
		}
	}
	return hs, payloads
}

func newSourceFixture(t *testing.T) *sourceFixture {
	t.Helper()
	dir := t.TempDir()
	j, err := audit.Open(filepath.Join(dir, "audit"), audit.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	media, err := store.Open(filepath.Join(dir, "media"), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	pol := &policy.State{Nodes: map[string]*policy.Node{
		"store": {Name: "store", Role: policy.RoleStore, Site: "praha-1"},
		"dc-a":  {Name: "dc-a", Role: policy.RoleDatacenter, Jurisdiction: "EU"},
		"dc-us": {Name: "dc-us", Role: policy.RoleDatacenter, Jurisdiction: "US"},
	}}
	cj := &countingJournal{Journal: j}
	logged := new([]string)
	s := NewSource(Config{}, SourceDeps{
		Deps:    testDeps(t, "store", pol, j, logged),
		Media:   func() *store.Store { return media },
		Journal: cj,
	})
	return &sourceFixture{s: s, media: media, journal: cj, pol: pol, logged: logged}
}

// record stores an epoch record and n four-second segments of cam from
// t0, returning the segments.
func (f *sourceFixture) record(t *testing.T, cam string, t0 time.Time, n int) []store.SegmentMeta {
	t.Helper()
	if err := f.media.PutEpoch(cam, t0, t0.Add(time.Hour), []byte("record of "+cam)); err != nil {
		t.Fatal(err)
	}
	var out []store.SegmentMeta
	for i := range n {
		ct := []byte(fmt.Sprintf("ciphertext %s %d", cam, i))
		start := t0.Add(time.Duration(i) * 4 * time.Second)
		m := store.SegmentMeta{Camera: cam, Start: start, End: start.Add(4 * time.Second), EpochStart: t0,
			Size: int64(len(ct)), SHA256: sha256.Sum256(ct)}
		if err := f.media.Put(m, ct); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// A pull is answered with what its cursor lacks, and nothing more: the
// epoch record and audit entries first, then references to the site's
// segments in time order (never another site's), at most a batch of
// them; a datacenter that holds everything gets nothing, and the journal
// is not read when it holds the head.
func TestSourceServesWhatTheCursorLacks(t *testing.T) {
	nodetest.CheckLeaks(t)
	f := newSourceFixture(t)
	cam := "praha-1/entrance"
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	segs := f.record(t, cam, t0, replBatchSegments+8)
	f.record(t, "brno-1/yard", t0, 2)
	for i := range 3 {
		f.s.d.Audit(audit.Event{Actor: "store", Action: "test", Object: fmt.Sprint(i)})
	}
	head, _ := f.journal.Head()
	ctx := context.Background()

	var w recorded
	sent, err := f.s.serve(ctx, "praha-1", replPull{}, &w)
	if err != nil {
		t.Fatal(err)
	}
	hs, payloads := w.items(t)
	if sent != len(hs) || sent != 2+replBatchSegments {
		t.Fatalf("sent %d items (%d decoded), want the record, the audit and %d segments", sent, len(hs), replBatchSegments)
	}
	if hs[0].Kind != "epoch" || hs[0].Camera != cam || string(payloads[0]) != "record of "+cam {
		t.Errorf("first item %+v %q, want the camera's epoch record", hs[0], payloads[0])
	}
	if hs[1].Kind != "audit" || hs[1].Count != int(head) || bytes.Count(payloads[1], []byte("\n")) != int(head) {
		t.Errorf("second item %+v, want the %d audit entries", hs[1], head)
	}
	for i, h := range hs[2:] {
		if h.Kind != "segment" || h.Camera != cam || !h.Start.Equal(segs[i].Start) || h.Size != segs[i].Size {
			t.Fatalf("segment reference %d: %+v, want %s at %s", i, h, cam, stamp(segs[i].Start))
		}
	}

	// Acknowledging the first batch: only the rest follows.
	held := replCursor{Segment: segs[replBatchSegments-1].Start, Epoch: t0}
	w = nil
	reads := f.journal.reads
	sent, err = f.s.serve(ctx, "praha-1", replPull{Cameras: map[string]replCursor{cam: held}, AuditSeq: head}, &w)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ = w.items(t)
	if sent != 8 || len(hs) != 8 || !hs[0].Start.Equal(segs[replBatchSegments].Start) {
		t.Errorf("after the first batch: %d items from %+v, want the last 8 segments", sent, hs)
	}
	if f.journal.reads != reads {
		t.Errorf("the journal was read for a datacenter holding its head")
	}
	// Holding everything: an empty answer.
	w = nil
	held.Segment = segs[len(segs)-1].Start
	if sent, err := f.s.serve(ctx, "praha-1", replPull{Cameras: map[string]replCursor{cam: held}, AuditSeq: head}, &w); sent != 0 || len(w) != 0 || err != nil {
		t.Errorf("a caught-up datacenter got %d items (%d frames), %v", sent, len(w), err)
	}
}

// A refusal is audited once per datacenter and reason, not on every
// retry; a datacenter outside the policy's jurisdictions is refused
// before it asks; a pull clears the refusal and only the first pull of a
// session is audited. The status follows each datacenter's cursor.
func TestSourceAuditsRefusalsOnceAndTracksAcks(t *testing.T) {
	nodetest.CheckLeaks(t)
	f := newSourceFixture(t)
	cam := "praha-1/entrance"
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	segs := f.record(t, cam, t0, 3)
	count := func(actor, d string) int {
		es, err := f.journal.Since(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Action == "replicate" && e.Actor == actor && e.Object == "store" && e.Decision == d {
				n++
			}
		}
		return n
	}
	f.s.RefuseOutside(f.pol)
	f.s.RefuseOutside(f.pol)
	if n := count("dc-us", audit.Deny); n != 1 {
		t.Fatalf("dc-us refused %d times in the journal, want once", n)
	}
	if n := count("dc-a", audit.Deny); n != 0 {
		t.Errorf("dc-a, in the EU, refused %d times", n)
	}
	f.s.refuse("dc-us", errors.New("another reason"))
	f.s.refuse("dc-us", errors.New("another reason"))
	if n := count("dc-us", audit.Deny); n != 2 {
		t.Errorf("a new reason audited %d refusals in all, want 2", n)
	}
	if len(*f.logged) != 2 || !strings.Contains((*f.logged)[0], "replication to dc-us refused") {
		t.Errorf("logged %q, want the two refusals", *f.logged)
	}

	byDC := func() map[string]Status {
		out := map[string]Status{}
		for _, s := range f.s.Status() {
			out[s.Datacenter] = s
		}
		return out
	}
	s := byDC()
	if s["dc-us"].State != "refused" || !strings.Contains(s["dc-us"].Error, "jurisdiction US") || s["dc-a"].State != "waiting" || s["dc-a"].LagSegments != 3 {
		t.Errorf("before any pull: %+v", s)
	}
	f.s.ack("dc-a", "praha-1", map[string]replCursor{cam: {Segment: segs[0].Start, Epoch: t0}, "brno-1/yard": {Segment: t0}})
	f.s.ack("dc-a", "praha-1", map[string]replCursor{cam: {Segment: segs[0].Start, Epoch: t0}})
	if n := count("dc-a", audit.Allow); n != 1 {
		t.Errorf("two pulls audited %d times, want once (the session's first)", n)
	}
	if _, ok := f.s.acks["dc-a"]["brno-1/yard"]; ok {
		t.Error("an acknowledgement of another site's camera was kept")
	}
	s = byDC()
	if a := s["dc-a"]; a.State != "behind" || a.LagSegments != 2 || !a.UpTo.Equal(segs[0].End) || a.LagBytes != segs[1].Size+segs[2].Size || a.LagSeconds != 8 {
		t.Errorf("dc-a one segment in: %+v", a)
	}
	f.s.ack("dc-a", "praha-1", map[string]replCursor{cam: {Segment: segs[2].Start, Epoch: t0}})
	if a := byDC()["dc-a"]; a.State != "caught-up" || a.LagSegments != 0 || !a.UpTo.Equal(segs[2].End) {
		t.Errorf("dc-a holding all: %+v", a)
	}
	// A pull clears the refusal: refused again later, it is audited again.
	f.s.ack("dc-us", "praha-1", nil)
	f.s.RefuseOutside(f.pol)
	if n := count("dc-us", audit.Deny); n != 3 {
		t.Errorf("dc-us refused %d times after its refusal was cleared, want 3", n)
	}
}

// A node that is not a store (no Source, or no recordings yet) refuses
// both ops, after checking the body; a malformed body is a bad request.
func TestSourceRefusesOnANodeThatIsNotAStore(t *testing.T) {
	ctx := context.Background()
	peer := keys.NewNodePrivate().Public()
	var none *Source
	idle := NewSource(Config{}, SourceDeps{Media: func() *store.Store { return nil }})
	for name, s := range map[string]*Source{"no source": none, "no recordings": idle} {
		var re *rpc.Error
		err := s.HandleReplicate(ctx, peer, []byte(`{"cameras":{},"audit_seq":0,"wait_ms":0}`), nil)
		if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, "not a store") {
			t.Errorf("%s: pull: %v, want a denial", name, err)
		}
		err = s.HandleReplicateGet(ctx, peer, []byte(`{"camera":"praha-1/entrance","start":"2026-12-01T10:00:00Z","sha256":"`+strings.Repeat("ab", 32)+`"}`), nil)
		if !errors.As(err, &re) || re.Code != rpc.Denied {
			t.Errorf("%s: fetch: %v, want a denial", name, err)
		}
		err = s.HandleReplicate(ctx, peer, []byte(`{"cameras":{},"extra":1}`), nil)
		if !errors.As(err, &re) || re.Code != rpc.BadRequest {
			t.Errorf("%s: an unknown field: %v, want a bad request", name, err)
		}
	}
}

// A refusal is passed on for a breach draft only when it is for the
// datacenter's jurisdiction, each time it is audited.
func TestSourceBreachDraftOnlyForJurisdiction(t *testing.T) {
	f := newSourceFixture(t)
	var told []string
	f.s.d.Outside = func(dc string, why error) { told = append(told, dc+": "+why.Error()) }
	f.s.RefuseOutside(f.pol)
	f.s.RefuseOutside(f.pol)
	f.s.refuse("dc-a", errors.New("node \"dc-a\" is not a live member"))
	if len(told) != 1 || !strings.HasPrefix(told[0], "dc-us: ") || !strings.Contains(told[0], "jurisdiction US") {
		t.Fatalf("told %q, want dc-us's refusal once", told)
	}
	f.pol.Nodes["dc-us"].Revoked = true
	f.s.refuse("dc-us", errors.New("node \"dc-us\" is not a live member"))
	if len(told) != 1 {
		t.Errorf("a revoked datacenter's refusal was told: %q", told)
	}
}
