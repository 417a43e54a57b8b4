package release

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// The chain check: consecutive links pass; a jump is a gap counting the
// missing segments; a repeat, a step back or a substituted predecessor is
// tampering; a restart (sequence 0, no predecessor) is a gap of unknown
// size; a skipped segment's reason is kept for the gap that follows.
func TestCustodyChain(t *testing.T) {
	f := nodetest.NewCustody(t)
	t0 := f.Rec.Start.Add(time.Second)
	links := make([]keys.SegmentLink, 6)
	var prev [32]byte
	for i := range links {
		_, links[i] = f.Segment(t, f.Signer, uint64(i), t0.Add(time.Duration(i)*4*time.Second), prev)
		prev = links[i].Hash()
	}
	run := func(order ...int) (gaps []*keys.ManifestGap, err error) {
		c := custodyChain{camera: f.Rec.Camera}
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
	_, sub := f.Segment(t, f.Signer, 2, links[2].Start, [32]byte{7})
	c := custodyChain{camera: f.Rec.Camera}
	c.next(&links[0])
	c.next(&links[1])
	if _, err := c.next(&sub); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a substituted segment: %v", err)
	}
	// A restart of the chain (the store lost its newest segment) is a gap
	// of unknown size, never silent.
	_, restart := f.Segment(t, f.Signer, 0, links[5].End.Add(time.Minute), [32]byte{})
	c = custodyChain{camera: f.Rec.Camera}
	c.next(&links[4])
	c.next(&links[5])
	if g, err := c.next(&restart); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "restarts") {
		t.Errorf("a restarted chain: %+v, %v", g, err)
	}
	// A segment skipped because it did not verify leaves a gap with its
	// reason although the chain itself is whole.
	c = custodyChain{camera: f.Rec.Camera}
	c.next(&links[0])
	c.pending = "a segment that did not verify was served in its place"
	if g, err := c.next(&links[1]); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "did not verify") {
		t.Errorf("a refused segment between two good ones: %+v, %v", g, err)
	}
}
