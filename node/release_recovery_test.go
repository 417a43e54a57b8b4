package node

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// relFed is TestReleaseAndExport's federation, for the scenarios that
// follow the first export: a leader lost between approval and release,
// the recovery key standing in for a datacenter, expiry, and
// crypto-shredding.
type relFed struct {
	t                         *testing.T
	ctx                       context.Context
	f                         acme
	desk, dcB, witness, store *Node
	approvers                 map[string]*keys.AdminKey
	cam                       string
	from, to                  time.Time
	lastOut                   string // the last export written
}

// request files request id on desk for the scope [x.from, x.to) and
// returns its one-time key's public half.
func (x *relFed) request(id string, from, to, expires time.Time) string {
	x.t.Helper()
	pub, err := x.desk.NewReleaseKey()
	if err != nil {
		x.t.Fatal(err)
	}
	x.submit(signed(x.t, x.f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: id, Node: "desk", Selector: x.cam, From: from, To: to, Purpose: "theft at the entrance",
		Basis: "art. 6(1)(f)", Key: pub, Expires: expires}}))
	waitTrue(x.t, 10*time.Second, "desk to see "+id, func() bool { return x.desk.Policy().Requests[id] != nil })
	return pub
}

func (x *relFed) approve(id, name string) {
	x.t.Helper()
	digest := policy.RequestDigest(testFederation, x.desk.Policy().Requests[id])
	x.submit(signed(x.t, x.approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
		Approval: &policy.Approval{Request: id, Digest: digest}}))
}

func (x *relFed) submit(env policy.Envelope) {
	x.t.Helper()
	if res, err := SubmitVia(x.ctx, x.desk.cfg.Dir, env); err != nil || !res.Applied {
		x.t.Fatalf("submit: %+v %v", res, err)
	}
}

// exportAs exports id to a file of the given extension (.ts or .mp4) and
// checks it holds exactly the frames of x's range.
func (x *relFed) exportAs(id, ext string) {
	x.t.Helper()
	out := filepath.Join(x.t.TempDir(), id+ext)
	res, err := x.desk.Export(x.ctx, order(x.t, x.f.admin, release.ExportRequest{Request: id, Out: out, Exporter: "alice"}))
	if err != nil || res.Refused != "" {
		x.t.Fatalf("export %s: %+v %v", id, res, err)
	}
	x.lastOut = out
	x.checkFrames(id, res, out)
}

func (x *relFed) checkFrames(id string, res release.ExportResult, out string) {
	x.t.Helper()
	want := int(x.to.Sub(x.from) / time.Second * clip.FPS)
	b, err := os.ReadFile(out)
	if err != nil {
		x.t.Fatal(err)
	}
	if res.Manifest.Output.Frames != want {
		x.t.Errorf("export %s: %d frames, want %d", id, res.Manifest.Output.Frames, want)
	}
	if n := ffprobeFrames(x.t, b); n != want {
		x.t.Errorf("export %s: ffprobe decoded %d frames, want %d", id, n, want)
	}
}

// frames runs op on target as by and returns the frames answered.
func frames(ctx context.Context, by *Node, target, op string, q any) ([][]byte, error) {
	rd, conn, err := by.callNode(ctx, by.Policy(), target, op, q)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	return rpc.ReadFrames(rd, 0)
}

func wantDenied(t *testing.T, what string, err error, want string) {
	t.Helper()
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, want) {
		t.Errorf("%s: %v; want a denial saying %q", what, err, want)
	}
}

// expiring is a request that expires while the other scenarios run, with
// what desk had of it before: its key and a share dc-a released to it.
type expiring struct {
	pub    string
	rk     *keys.ReleaseKey
	sealed []byte
	o      *keys.EpochOpener
	seg    keys.SegmentRef
	ct     []byte
}

// expiringRequest files and approves r2, which expires in 10 s, and takes
// a share of its first epoch from dc-a, which opens while r2 lives.
func (x *relFed) expiringRequest() expiring {
	t := x.t
	e := expiring{pub: x.request("r2", x.from, x.to, time.Now().Add(10*time.Second))}
	x.approve("r2", "bob")
	x.approve("r2", "carol")
	e.rk = x.desk.relKeys.Get(e.pub)
	recs, err := frames(x.ctx, x.desk, "store", release.OpEpochs, release.ScopeQuery{Request: "r2", Camera: x.cam, From: x.from, To: x.to})
	if err != nil || len(recs) == 0 {
		t.Fatalf("r2's epochs: %d, %v", len(recs), err)
	}
	rec, err := sealedRecord(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if e.o, err = keys.NewEpochOpener(rec); err != nil {
		t.Fatal(err)
	}
	m := x.replicatedSegment(rec)
	e.seg = keys.SegmentRef{Camera: m.Camera, Start: m.Start, End: m.End}
	if e.ct, err = innerCiphertext(x.store.rec.Store().ReadSegment(m)); err != nil {
		t.Fatal(err)
	}
	sealed, err := frames(x.ctx, x.desk, "dc-a", release.OpRelease, release.ReleaseQuery{Request: "r2", Camera: x.cam, Segments: []time.Time{m.Start}})
	if err != nil || len(sealed) != 1 {
		t.Fatalf("dc-a's release for r2: %v", err)
	}
	e.sealed = sealed[0]
	p, err := e.o.OpenPartial(e.rk, e.sealed, "r2", e.seg, e.ct)
	if err != nil {
		t.Fatalf("r2's answer before expiry: %v", err)
	}
	p.Zero()
	return e
}

// checkLeaderLoss: the Raft leader (made the witness, so that no custodian
// goes with it) is stopped right after the last approval commits; the
// export, whose every step begins with a linearizable read, completes once
// dc-a and dc-b have elected a new leader.
func (x *relFed) checkLeaderLoss() {
	t := x.t
	x.request("r3", x.from, x.to, time.Now().Add(time.Hour))
	x.approve("r3", "bob")
	wid := x.witness.raft.Status().ID
	for _, n := range []*Node{x.f.dc, x.dcB} {
		if n.raft.Status().Role.String() == "leader" {
			if err := n.raft.TransferLeadership(x.ctx, wid); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitTrue(t, 10*time.Second, "the witness to lead", func() bool { return x.witness.raft.Status().Role.String() == "leader" })
	x.approve("r3", "carol")
	x.witness.Close()
	killed := time.Now()
	out := filepath.Join(t.TempDir(), "r3.ts")
	tries := 0
	for {
		tries++
		res, err := x.desk.Export(x.ctx, order(x.t, x.f.admin, release.ExportRequest{Request: "r3", Out: out, Exporter: "alice"}))
		if err == nil && res.Refused == "" {
			t.Logf("r3 exported %v after the leader stopped (%d tries)", time.Since(killed).Round(time.Millisecond), tries)
			x.checkFrames("r3", res, out)
			return
		}
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("export after the leader stopped: %+v %v", res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkRecovery: with dc-b's custodian key gone, the export fails naming
// dc-b; a key other than the recovery key is refused; the recovery key's
// shares (released in this process, as custos recover-shares does) plus
// dc-a's make it succeed.
func (x *relFed) checkRecovery() {
	t := x.t
	x.request("r4", x.from, x.to, time.Now().Add(time.Hour))
	x.approve("r4", "bob")
	x.approve("r4", "carol")
	path := CustodianKeyPath(x.dcB.cfg.Dir)
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(path+".away", path)
	out := filepath.Join(t.TempDir(), "r4.ts")
	_, err := x.desk.Export(x.ctx, order(x.t, x.f.admin, release.ExportRequest{Request: "r4", Out: out, Exporter: "alice"}))
	if err == nil || !strings.Contains(err.Error(), "(dc-b: rpc: release: this datacenter holds no custodian key)") || !strings.Contains(err.Error(), "recover-shares r4") {
		t.Fatalf("export without dc-b's key: %v", err)
	}
	ka, err := keys.LoadCustodianKey(CustodianKeyPath(x.f.dc.cfg.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Zero()
	if _, err := RecoverSharesVia(x.ctx, x.desk.cfg.Dir, testFederation, "r4", ka); err == nil || !strings.Contains(err.Error(), "not this federation's recovery key") {
		t.Fatalf("dc-a's key as the recovery key: %v", err)
	}
	segs, _ := x.store.rec.Store().Segments(x.cam, x.from, x.to)
	fromA, err := frames(x.ctx, x.desk, "dc-a", release.OpRelease, release.ReleaseQuery{Request: "r4", Camera: x.cam, Segments: []time.Time{segs[0].Start}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.desk.AddRecoveredShares("r4", fromA); err == nil || !strings.Contains(err.Error(), "not from the policy's recovery key") {
		t.Fatalf("dc-a's shares handed in as the recovery key's: %v", err)
	}
	rk, err := keys.ParseRecoveryKey(x.f.recovery)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	// The holder proves the release from the signed ledger, anchored in
	// the federation ID they know: another ID proves nothing.
	if _, err := RecoverSharesVia(x.ctx, x.desk.cfg.Dir, "00112233445566778899aabbccddeeff", "r4", rk); !errors.Is(err, policy.ErrUnverified) {
		t.Fatalf("recover-shares for another federation: %v", err)
	}
	n, err := RecoverSharesVia(x.ctx, x.desk.cfg.Dir, testFederation, "r4", rk)
	if err != nil || n != len(segs) {
		t.Fatalf("recover-shares: %d segments (want %d), %v", n, len(segs), err)
	}
	x.exportAs("r4", ".mp4") // remuxed by ffmpeg: the same frames in MP4
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		mp4 := x.lastOut
		b, _ := os.ReadFile(mp4)
		if len(b) < 12 || string(b[4:8]) != "ftyp" {
			t.Errorf("%s is not an MP4 file", mp4)
		}
	}
}

// checkExpiry: once r2 expired, desk holds no release key at all (r2's was
// wiped: the share dc-a released to it before no longer opens), and desk's
// export, the store's segments and dc-a's release for r2 are refused.
func (x *relFed) checkExpiry(e expiring) {
	t := x.t
	waitTrue(t, 20*time.Second, "r2 to expire and desk to drop its key", func() bool { return x.desk.HeldReleaseKeys() == 0 })
	if !e.rk.IsZero() {
		t.Error("r2's release key was dropped but not wiped")
	}
	if p, err := e.o.OpenPartial(e.rk, e.sealed, "r2", e.seg, e.ct); err == nil {
		p.Zero()
		t.Error("an answer released to r2 opens after its expiry")
	}
	res, err := x.desk.Export(x.ctx, order(x.t, x.f.admin, release.ExportRequest{Request: "r2", Out: filepath.Join(t.TempDir(), "r2.ts"), Exporter: "alice"}))
	if err != nil || !strings.Contains(res.Refused, "expired") {
		t.Errorf("export of the expired r2: %+v %v", res, err)
	}
	in := release.ScopeQuery{Request: "r2", Camera: x.cam, From: x.from, To: x.to}
	_, err = frames(x.ctx, x.desk, "store", release.OpSegments, in)
	wantDenied(t, "segments of the expired r2", err, "expired")
	_, err = frames(x.ctx, x.desk, "dc-a", release.OpRelease, release.ReleaseQuery{Request: "r2", Camera: x.cam, Segments: []time.Time{e.seg.Start}})
	wantDenied(t, "release for the expired r2", err, "expired")
}

// checkShredding: retention past seg's epoch deletes its epoch record,
// which held the only copies of the epoch key's encrypted shares
// (custodians hold keys, not shares). A copy of seg kept aside, which dc-a
// and dc-b's keys decrypted before, is then beyond every custodian: the
// store has no record of the epoch, a request for seg's range is released
// no record, no file on any node's disk holds any of the shares, and no
// pair of the three custodian keys opens the copy with any record left.
func (x *relFed) checkShredding(seg store.SegmentMeta) {
	t := x.t
	st := x.store.rec.Store()
	raw, err := st.Epoch(x.cam, seg.EpochStart)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sealedRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	survivor, err := innerCiphertext(st.ReadSegment(seg))
	if err != nil {
		t.Fatal(err)
	}
	custodians := x.custodianKeys()
	if !opensWith(rec, custodians[0], custodians[1], survivor) {
		t.Fatal("dc-a's and dc-b's keys do not decrypt the segment before retention")
	}
	if on := x.sharesOnDisk(rec); len(on) == 0 {
		t.Fatal("no file holds the epoch's shares before retention")
	}
	cutoff := x.nextEpochStart(seg.EpochStart).Add(time.Nanosecond)
	d, err := media.Retain(st, x.cam, 72*time.Hour, cutoff.Add(72*time.Hour))
	if err != nil || d.Epochs == 0 {
		t.Fatalf("retention: %+v %v", d, err)
	}
	if _, err := st.Epoch(x.cam, rec.Start); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the epoch record after retention: %v", err)
	}
	// The datacenters apply the same retention to their replicas, on the
	// same clock (retainStore); here it runs at the same simulated time.
	for _, dc := range []*Node{x.f.dc, x.dcB} {
		if _, err := media.Retain(dc.replicas.Store(), x.cam, 72*time.Hour, cutoff.Add(72*time.Hour)); err != nil {
			t.Fatalf("retention on %s's replica: %v", dc.cfg.Name, err)
		}
	}
	// Only the shredded epoch's part of seg: a segment may run on into the
	// next epoch, whose record is not past retention.
	end := seg.End
	if end.After(rec.End) {
		end = rec.End
	}
	x.request("r5", seg.Start, end, time.Now().Add(time.Hour))
	x.approve("r5", "bob")
	x.approve("r5", "carol")
	if recs, err := frames(x.ctx, x.desk, "store", release.OpEpochs, release.ScopeQuery{Request: "r5", Camera: x.cam, From: seg.Start, To: end}); err != nil || len(recs) != 0 {
		t.Errorf("epochs of a shredded range: %d records, %v", len(recs), err)
	}
	if on := x.sharesOnDisk(rec); len(on) != 0 {
		t.Errorf("after retention, these files hold the epoch's shares: %v", on)
	}
	left, err := st.Epochs(x.cam, time.Time{}, time.Now().Add(time.Hour))
	if err != nil || len(left) == 0 {
		t.Fatalf("epochs left: %v", err)
	}
	for _, m := range left {
		b, err := st.Epoch(x.cam, m.Start)
		if err != nil {
			continue // retention at work
		}
		other, err := sealedRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range custodians {
			for j := i + 1; j < len(custodians); j++ {
				if opensWith(other, custodians[i], custodians[j], survivor) {
					t.Fatalf("the copy decrypts with epoch %s and custodians %d, %d", m.Start, i, j)
				}
			}
		}
	}
}

// custodianKeys are dc-a's, dc-b's and the recovery key, wiped at the end.
func (x *relFed) custodianKeys() []*keys.CustodianKey {
	var out []*keys.CustodianKey
	for _, dir := range []string{x.f.dc.cfg.Dir, x.dcB.cfg.Dir} {
		k, err := keys.LoadCustodianKey(CustodianKeyPath(dir))
		if err != nil {
			x.t.Fatal(err)
		}
		out = append(out, k)
	}
	rk, err := keys.ParseRecoveryKey(x.f.recovery)
	if err != nil {
		x.t.Fatal(err)
	}
	out = append(out, rk)
	x.t.Cleanup(func() {
		for _, k := range out {
			k.Zero()
		}
	})
	return out
}

// nextEpochStart is the start of the first segment of a later epoch than
// epoch's: every segment of epoch ends at or before it.
func (x *relFed) nextEpochStart(epoch time.Time) time.Time {
	var next time.Time
	waitTrue(x.t, 10*time.Second, "a segment of a later epoch", func() bool {
		segs, _ := x.store.rec.Store().Segments(x.cam, epoch, time.Now().Add(time.Hour))
		for _, s := range segs {
			if s.EpochStart.After(epoch) {
				next = s.Start
				return true
			}
		}
		return false
	})
	return next
}

// opensWith reports whether custodians a and b, answering for ct, decrypt
// it.
func opensWith(rec *keys.EpochRecord, a, b *keys.CustodianKey, ct []byte) bool {
	pt, err := keys.DecryptSegmentAsCustodians(rec, ct, a, b)
	clear(pt)
	return err == nil
}

// sharesOnDisk lists the files under the federation's directories that
// hold any of rec's encrypted shares.
func (x *relFed) sharesOnDisk(rec *keys.EpochRecord) []string {
	var on []string
	err := filepath.WalkDir(x.f.tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // files come and go while the nodes run
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, s := range rec.Shares {
			if bytes.Contains(b, s.Encrypted) {
				on = append(on, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		x.t.Fatal(err)
	}
	return on
}

// checkStoreOffline: with the store gone (stolen, burnt), an approved
// request is exported from the datacenters' replicas.
func (x *relFed) checkStoreOffline() {
	t := x.t
	var segs []store.SegmentMeta
	waitTrue(t, 60*time.Second, "two newer segments on the store, replicated to dc-a and dc-b", func() bool {
		segs, _ = x.store.rec.Store().Segments(x.cam, x.to.Add(time.Second), time.Now().Add(time.Hour))
		if len(segs) < 2 {
			return false
		}
		s, err := x.store.Status()
		if err != nil {
			return false
		}
		n := 0
		for _, r := range s.Replication {
			if r.Camera == x.cam && !r.UpTo.Before(segs[1].End) {
				n++
			}
		}
		return n == 2
	})
	x.from, x.to = segs[0].Start, segs[0].Start.Add(time.Second)
	if err := x.store.Close(); err != nil {
		t.Fatal(err)
	}
	x.request("r9", x.from, x.to, time.Now().Add(time.Hour))
	x.approve("r9", "bob")
	x.approve("r9", "carol")
	x.exportAs("r9", ".ts")
}

// checkStoreRevoked: a stolen store is revoked, and footage it recorded
// while a member is still exported, from the datacenters' replicas (the
// export no longer needs a live store of the site).
func (x *relFed) checkStoreRevoked() {
	x.t.Helper()
	x.submit(signed(x.t, x.f.admin, "alice", &policy.Command{Kind: policy.KindRevokeNode, Name: x.store.Name()}))
	waitTrue(x.t, 10*time.Second, "desk to see the store revoked", func() bool {
		n := x.desk.Policy().Nodes[x.store.Name()]
		return n != nil && n.Revoked
	})
	x.request("r11", x.from, x.to, time.Now().Add(time.Hour))
	x.approve("r11", "bob")
	x.approve("r11", "carol")
	x.exportAs("r11", ".ts")
}

// replicatedSegment waits for dc-a to hold a replica of a segment of rec's
// epoch inside the relFed's range, and returns the store's meta of it.
func (x *relFed) replicatedSegment(rec *keys.EpochRecord) store.SegmentMeta {
	x.t.Helper()
	var m store.SegmentMeta
	waitTrue(x.t, 30*time.Second, "dc-a to replicate a segment in range", func() bool {
		segs, _ := x.store.rec.Store().Segments(x.cam, x.from, x.to)
		for _, s := range segs {
			if !s.EpochStart.Equal(rec.Start) {
				continue
			}
			held, _ := x.f.dc.replicas.Store().Segments(x.cam, s.Start, s.Start.Add(time.Nanosecond))
			if len(held) > 0 {
				m = s
				return true
			}
		}
		return false
	})
	return m
}

// checkCorruptOnStore: a segment whose copy on the store fails its SHA-256
// does not stop an export: the store audits it, counts it in its status
// and says which one; the export reads it from a datacenter's replica and
// holds exactly the range.
func (x *relFed) checkCorruptOnStore() {
	t := x.t
	x.request("r6", x.from, x.to, time.Now().Add(time.Hour))
	x.approve("r6", "bob")
	x.approve("r6", "carol")
	segs, err := x.store.rec.Store().Segments(x.cam, x.from, x.to)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments in range: %d, %v", len(segs), err)
	}
	victim := segs[0]
	waitTrue(t, 60*time.Second, "both datacenters to hold the segment", func() bool {
		for _, dc := range []*Node{x.f.dc, x.dcB} {
			if held, _ := dc.replicas.Store().Segments(x.cam, victim.Start, victim.Start.Add(time.Nanosecond)); len(held) == 0 {
				return false
			}
		}
		return true
	})
	ct, err := x.store.rec.Store().ReadSegment(victim)
	if err != nil {
		t.Fatal(err)
	}
	var path string
	filepath.WalkDir(x.store.rec.Store().Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, ct) {
				path = p
			}
		}
		return nil
	})
	if path == "" {
		t.Fatal("no file on the store holds the segment")
	}
	bad := bytes.Clone(ct)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(path, ct, 0o600) // the scenarios that follow use it
	x.exportAs("r6", ".ts")
	if _, deny := auditDecisions(t, x.store, "corrupt-segment"); deny == 0 {
		t.Error("the store did not audit its corrupt segment")
	}
	if st, err := x.store.Status(); err != nil || st.CorruptSegments == 0 {
		t.Errorf("the store's status does not count its corrupt segment: %v", err)
	}
}
