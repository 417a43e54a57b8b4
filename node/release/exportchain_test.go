package release

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
)

// custodyFixture: a store's custody signer and an epoch record of its
// camera praha-1/entrance, sealed by it, for links of the camera's chain.
type custodyFixture struct {
	signer *keys.CustodySigner
	rec    *keys.EpochRecord
	sealed []byte // rec, sealed by signer
	ct     []byte
}

func newCustodyFixture(t *testing.T) *custodyFixture {
	t.Helper()
	k := keys.NewNodePrivate()
	s, err := keys.NewCustodySigner("store", &k)
	if err != nil {
		t.Fatal(err)
	}
	var custodians []keys.Custodian
	for _, name := range []string{"dc-a", "dc-b"} {
		ck, err := keys.NewCustodianKey(name)
		if err != nil {
			t.Fatal(err)
		}
		custodians = append(custodians, ck.Custodian())
		ck.Zero()
	}
	rec, err := keys.NewEpochKey("praha-1/entrance", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), keys.DefaultEpochLength, custodians)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keys.SealEpochRecord(s, rec)
	if err != nil {
		t.Fatal(err)
	}
	return &custodyFixture{signer: s, rec: rec, sealed: sealed, ct: []byte("an OpenPGP message")}
}

func (f *custodyFixture) segment(t *testing.T, s *keys.CustodySigner, seq uint64, start time.Time, prev [32]byte) ([]byte, keys.SegmentLink) {
	t.Helper()
	e, err := keys.ParseSealedEpoch(f.sealed)
	if err != nil {
		t.Fatal(err)
	}
	b, l, err := keys.SealSegment(s, keys.SegmentLink{Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochHash: e.RecordHash,
		Seq: seq, Start: start, End: start.Add(4 * time.Second), Prev: prev}, f.ct)
	if err != nil {
		t.Fatal(err)
	}
	return b, l
}

// The chain check: consecutive links pass; a jump is a gap counting the
// missing segments; a repeat, a step back or a substituted predecessor is
// tampering; a restart (sequence 0, no predecessor) is a gap of unknown
// size; a skipped segment's reason is kept for the gap that follows.
func TestCustodyChain(t *testing.T) {
	f := newCustodyFixture(t)
	t0 := f.rec.Start.Add(time.Second)
	links := make([]keys.SegmentLink, 6)
	var prev [32]byte
	for i := range links {
		_, links[i] = f.segment(t, f.signer, uint64(i), t0.Add(time.Duration(i)*4*time.Second), prev)
		prev = links[i].Hash()
	}
	run := func(order ...int) (gaps []*keys.ManifestGap, err error) {
		c := custodyChain{camera: f.rec.Camera}
		for _, i := range order {
			g, err := c.next(&links[i])
			if err != nil {
				return gaps, err
			}
			if g != nil {
				gaps = append(gaps, g)
			}
		}
		return gaps, nil
	}
	if gaps, err := run(0, 1, 2, 3, 4, 5); err != nil || len(gaps) != 0 {
		t.Errorf("a whole chain: %v, %v", gaps, err)
	}
	if gaps, err := run(2, 3, 4); err != nil || len(gaps) != 0 {
		t.Errorf("a chain that starts inside the range: %v, %v", gaps, err)
	}
	gaps, err := run(0, 1, 4, 5)
	if err != nil || len(gaps) != 1 || gaps[0].Missing != 2 || !gaps[0].From.Equal(links[1].End) || !gaps[0].To.Equal(links[4].Start) {
		t.Errorf("two removed segments: %+v, %v", gaps, err)
	}
	for name, order := range map[string][]int{"repeated": {0, 1, 1, 2}, "swapped": {0, 2, 1, 3}, "backwards": {3, 2}} {
		if _, err := run(order...); !errors.Is(err, custody.ErrBroken) {
			t.Errorf("%s segments: %v, want a broken chain", name, err)
		}
	}
	// A link of the right sequence number whose predecessor is another
	// segment than the one served before it (a substitute, sealed by the
	// store's key for another history) breaks the chain.
	_, sub := f.segment(t, f.signer, 2, links[2].Start, [32]byte{7})
	c := custodyChain{camera: f.rec.Camera}
	c.next(&links[0])
	c.next(&links[1])
	if _, err := c.next(&sub); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a substituted segment: %v", err)
	}
	// A restart of the chain (the store lost its newest segment) is a gap
	// of unknown size, never silent.
	_, restart := f.segment(t, f.signer, 0, links[5].End.Add(time.Minute), [32]byte{})
	c = custodyChain{camera: f.rec.Camera}
	c.next(&links[4])
	c.next(&links[5])
	if g, err := c.next(&restart); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "restarts") {
		t.Errorf("a restarted chain: %+v, %v", g, err)
	}
	// A segment skipped because it did not verify leaves a gap with its
	// reason although the chain itself is whole.
	c = custodyChain{camera: f.rec.Camera}
	c.next(&links[0])
	c.pending = "a segment that did not verify was served in its place"
	if g, err := c.next(&links[1]); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "did not verify") {
		t.Errorf("a refused segment between two good ones: %+v, %v", g, err)
	}
}
