package release

// The custodians' answers an export needs: EpochThreshold per segment,
// each proved, from the recovery key (when handed in) and the datacenters.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// custodians are the live datacenters holding custodian keys, by name.
func custodians(st *policy.State) []string {
	var out []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleDatacenter && nd.Custodian != nil && policy.Member(st, name, time.Now()) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// pendingSegment is a fetched segment waiting for its custodians' answers.
type pendingSegment struct {
	h    SegmentHeader
	link keys.SegmentLink // verified: h's times are the link's
	ct   []byte           // the OpenPGP message, without its seal
	o    *keys.EpochOpener
}

func (p pendingSegment) ref(cam string) keys.SegmentRef {
	return keys.SegmentRef{Camera: cam, Start: p.h.Start, End: p.h.End}
}

// answers gets, for every segment of batch, the verified answers of
// EpochThreshold distinct custodians: the recovery key's (custos
// recover-shares) when the node was handed them, then the datacenters' in
// order until each segment has enough. A custodian whose answer fails its
// proof or does not hold a segment is passed over for that segment and
// named in the error if the segment stays short. With allowGaps a short
// segment is not an error: its parts stay short and short[i] says why.
func (x *exporter) answers(ctx context.Context, cam string, batch []pendingSegment) (parts [][]*keys.Partial, short map[int]string, err error) {
	t0 := time.Now()
	defer func() { x.release += time.Since(t0) }()
	parts = make([][]*keys.Partial, len(batch))
	ok := false
	defer func() {
		if !ok {
			zeroAnswers(parts)
		}
	}()
	var failures []string
	for i, p := range batch {
		msg := x.s.d.Keys.recoveredPartial(x.r.Key, segmentID(cam, p.h.Start))
		if msg == nil {
			continue
		}
		a, err := p.o.OpenPartial(x.rk, msg, x.r.ID, p.ref(cam), p.ct)
		if err != nil {
			failures = append(failures, fmt.Sprintf("recovery: %v", err))
			continue
		}
		parts[i] = append(parts[i], a)
	}
	cs := custodians(x.st)
	for len(cs) > 0 {
		var idx []int
		need := 0
		for i := range batch {
			if n := keys.EpochThreshold - len(parts[i]); n > 0 {
				idx = append(idx, i)
				need = max(need, n)
			}
		}
		if len(idx) == 0 {
			break
		}
		// As many custodians at once as a segment still needs answers;
		// the next ones only for what they left short.
		round := cs[:min(need, len(cs))]
		cs = cs[len(round):]
		got := make([][][]*keys.Partial, len(round))
		fails := make([][]string, len(round))
		var wg sync.WaitGroup
		for k, c := range round {
			wg.Go(func() { got[k], fails[k] = x.fromCustodian(ctx, c, cam, batch, idx) })
		}
		wg.Wait()
		for k := range round {
			for j, i := range idx {
				parts[i] = append(parts[i], got[k][j]...)
			}
			failures = append(failures, fails[k]...)
		}
	}
	for i, p := range batch {
		if len(parts[i]) < keys.EpochThreshold {
			why := fmt.Sprintf("only %d of the %d custodians needed answered (%s)", len(parts[i]), keys.EpochThreshold, strings.Join(failures, "; "))
			if !x.allowGaps {
				return nil, nil, fmt.Errorf("segment %s of %s: %s; the controller's recovery key can stand in for one: custos recover-shares %s --key FILE; or export with --allow-gaps to write the rest with this gap listed",
					stamp(p.h.Start), cam, why, x.r.ID)
			}
			if short == nil {
				short = map[int]string{}
			}
			short[i] = "its key was not released: " + why
		}
	}
	ok = true
	return parts, short, nil
}

// fromCustodian asks custodian c for the segments idx of batch that are
// still short of answers and returns, per entry of idx, the answer that
// opened (none, or one), and what failed, for the error if a segment stays
// short.
func (x *exporter) fromCustodian(ctx context.Context, c, cam string, batch []pendingSegment, idx []int) (got [][]*keys.Partial, failures []string) {
	got = make([][]*keys.Partial, len(idx))
	q := ReleaseQuery{Request: x.r.ID, Camera: cam}
	for _, i := range idx {
		q.Segments = append(q.Segments, batch[i].h.Start)
	}
	sealed, err := x.askCustodian(ctx, c, q)
	if err == nil && len(sealed) != len(idx) {
		err = fmt.Errorf("answered %d segments of %d", len(sealed), len(idx))
	}
	if err != nil {
		return got, []string{fmt.Sprintf("%s: %v", c, err)}
	}
	missing := 0
	for j, i := range idx {
		if len(sealed[j]) == len(notHeld) && sealed[j][0] == notHeld[0] {
			missing++
			continue
		}
		a, err := batch[i].o.OpenPartial(x.rk, sealed[j], x.r.ID, batch[i].ref(cam), batch[i].ct)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		got[j] = []*keys.Partial{a}
	}
	if missing > 0 {
		failures = append(failures, fmt.Sprintf("%s: %d segments not replicated there yet", c, missing))
	}
	return got, failures
}

func zeroAnswers(parts [][]*keys.Partial) {
	for _, ps := range parts {
		for _, p := range ps {
			p.Zero()
		}
	}
}

// askCustodian runs the release op on custodian c (directly when c is this
// node).
func (x *exporter) askCustodian(ctx context.Context, c string, q ReleaseQuery) ([][]byte, error) {
	if c == x.s.d.Peers.Self(x.st) {
		return x.s.releasePartials(x.st, c, q)
	}
	rd, conn, err := x.s.d.Peers.Call(ctx, x.st, c, OpRelease, q)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	return rpc.ReadFrames(rd, len(q.Segments))
}
