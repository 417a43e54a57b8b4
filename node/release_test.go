package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// The whole release across an in-process federation (dc-a, dc-b, a store
// recording praha-1/entrance, an admin node "desk" where alice files the
// request): one approval is not enough, self-approval is refused, two
// approvals release the keys to desk only, and the export holds exactly the
// frames of the requested range, with a manifest that verifies. The store
// and the custodians refuse anything outside the request's scope and any
// other node than desk. The same federation (with a witness, so that a
// quorum outlives a leader) then runs release_recovery_test.go's
// scenarios: the leader lost between approval and release, the recovery
// key standing in for dc-b, expiry, and crypto-shredding.
func TestReleaseAndExport(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	dcB := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	witness := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleWitness, Name: "witness"})
	submitOK := func(dir string, env policy.Envelope) {
		t.Helper()
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			t.Fatalf("submit: %+v %v", res, err)
		}
	}
	dcDir := f.dc.cfg.Dir
	for _, c := range []*policy.Camera{
		{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour},
		{Site: "praha-1", Name: "yard", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour},
	} {
		submitOK(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera, Camera: c}))
	}
	approvers := map[string]*keys.AdminKey{}
	for _, name := range []string{"bob", "carol"} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		approvers[name] = k
		submitOK(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddUser,
			User: &policy.User{Name: name, Role: policy.UserApprover, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}}))
	}
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		// Short epochs: the request spans more than one, and retention
		// can pass an epoch while the store keeps recording.
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, EpochLength: 3 * time.Second, MinFree: -1}
	})
	const cam = "praha-1/entrance"
	var segs []store.SegmentMeta
	waitTrue(t, 60*time.Second, "the store to record 6 segments", func() bool {
		segs, _ = st1.rec.Store().Segments(cam, time.Time{}, time.Now().Add(time.Hour))
		return len(segs) >= 6
	})
	from := segs[2].Start // a keyframe: segments start at one
	to := from.Add(2 * time.Second)

	// Approvers in place, the founder seals: requests open from now on.
	submitOK(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}}))
	pub, err := desk.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	deskDir := desk.cfg.Dir
	submitOK(deskDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "r1", Node: "desk", Selector: cam, From: from, To: to, Purpose: "theft at the entrance",
		Basis: "art. 6(1)(f)", Key: pub, Expires: time.Now().Add(time.Hour)}}))
	waitTrue(t, 10*time.Second, "desk to see r1", func() bool { return desk.Policy().Requests["r1"] != nil })
	digest := policy.RequestDigest(testFederation, desk.Policy().Requests["r1"])
	approve := func(k *keys.AdminKey, name string) (ApplyResult, error) {
		return SubmitVia(ctx, deskDir, signed(t, k, name, &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: "r1", Digest: digest}}))
	}
	if res, err := approve(f.admin, "alice"); err != nil || res.Applied || !strings.Contains(res.Reason, "never the requester") {
		t.Fatalf("self-approval: %+v %v", res, err)
	}
	if res, err := approve(approvers["bob"], "bob"); err != nil || !res.Applied {
		t.Fatalf("bob's approval: %+v %v", res, err)
	}
	out := filepath.Join(t.TempDir(), "r1.ts")
	res, err := desk.Export(ctx, order(t, f.admin, release.ExportRequest{Request: "r1", Out: out, Exporter: "alice"}))
	if err != nil || !strings.Contains(res.Refused, "pending (1 of 2 approvals)") {
		t.Fatalf("export with one approval: %+v %v", res, err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused export wrote %s", out)
	}
	if res, err := approve(approvers["carol"], "carol"); err != nil || !res.Applied {
		t.Fatalf("carol's approval: %+v %v", res, err)
	}
	approved := time.Now() // carol's approval is committed
	checkOutsideRefused(t, ctx, desk, f.dc, dcB, st1, from, to)
	// The release belongs to alice: bob, a user of the federation, cannot
	// export her approved request; the refusal is audited, nothing is
	// written, and her one-time key stays for her own export below.
	stolen := filepath.Join(t.TempDir(), "stolen.ts")
	res, err = desk.Export(ctx, order(t, approvers["bob"], release.ExportRequest{Request: "r1", Out: stolen, Exporter: "bob"}))
	if err != nil || !strings.Contains(res.Refused, "only its requester") {
		t.Fatalf("bob's export of alice's request: %+v %v", res, err)
	}
	// Nor by naming alice: the order must carry her signature.
	for name, forged := range map[string]release.ExportRequest{
		"unsigned":      {Request: "r1", Out: stolen, Exporter: "alice", Time: time.Now()},
		"signed by bob": order(t, approvers["bob"], release.ExportRequest{Request: "r1", Out: stolen, Exporter: "alice"}),
		"another file": func() release.ExportRequest {
			o := order(t, f.admin, release.ExportRequest{Request: "r1", Out: out, Exporter: "alice"})
			o.Out = stolen
			return o
		}(),
		"an old order": func() release.ExportRequest {
			o := release.ExportRequest{Request: "r1", Out: stolen, Exporter: "alice", Time: time.Now().Add(-time.Hour)}
			o.Sig, _ = f.admin.Sign(release.ExportOrder(testFederation, o), o.Time)
			return o
		}(),
	} {
		res, err = desk.Export(ctx, forged)
		if err != nil || !strings.Contains(res.Refused, "export order") {
			t.Fatalf("export order %s: %+v %v", name, res, err)
		}
	}
	if _, err := os.Stat(stolen); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused export wrote its file")
	}
	if desk.HeldReleaseKeys() != 1 {
		t.Fatal("a refused export dropped the requester's release key")
	}
	if _, deny := auditDecisions(t, desk, "export"); deny < 2 {
		t.Errorf("desk audited %d refused exports, want ≥ 2 (one approval; bob)", deny)
	}
	res, err = desk.Export(ctx, order(t, f.admin, release.ExportRequest{Request: "r1", Out: out, Exporter: "alice"}))
	if err != nil || res.Refused != "" || res.Manifest == nil {
		t.Fatalf("export: %+v %v", res, err)
	}
	m := res.Manifest
	t.Logf("last approval committed → keys usable on desk: %v (release alone %v); export %v, %d bytes of ciphertext (%.1f MB/s); %d frames, %d bytes",
		(time.Since(approved) - res.Total + res.Release).Round(time.Millisecond), res.Release.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Ciphertext,
		float64(res.Ciphertext)/1e6/res.Total.Seconds(), m.Output.Frames, m.Output.Bytes)
	if n := desk.HeldReleaseKeys(); n != 0 {
		t.Errorf("desk holds %d release keys after the export", n)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", fi, err)
	}
	want := 2 * clip.FPS
	if m.Output.Frames != want || strings.Join(m.Approvers, ",") != "bob,carol" || m.Requester != "alice" || m.ExporterNode != "desk" {
		t.Errorf("manifest: %d frames (want %d), approvers %v, requester %s, node %s", m.Output.Frames, want, m.Approvers, m.Requester, m.ExporterNode)
	}
	plain, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := ffprobeFrames(t, plain); n != want {
		t.Errorf("ffprobe decoded %d frames from the export, want exactly %d (2 s at %d fps)", n, want, clip.FPS)
	}
	checkManifest(t, f.admin, m, out)
	checkExportedOnce(t, ctx, desk, f.admin, out)
	checkScopeRefused(t, ctx, desk, dcB, st1, f.dc, from, to)

	x := &relFed{t: t, ctx: ctx, f: f, desk: desk, dcB: dcB, witness: witness, store: st1, approvers: approvers, cam: cam, from: from, to: to}
	expiring := x.expiringRequest()
	x.checkLeaderLoss()
	x.checkRecovery()
	x.checkCorruptOnStore()
	x.checkExpiry(expiring)
	x.checkShredding(segs[0])
	x.checkStoreOffline()
	x.checkStoreRevoked()
	x.checkCustodyOnReplica()
}

// checkManifest signs m as the CLI does and checks that it verifies, and
// that a flipped byte in the export does not.
func checkManifest(t *testing.T, k *keys.AdminKey, m *keys.Manifest, out string) {
	t.Helper()
	body, sig, err := keys.SignManifest(k, m)
	if err != nil {
		t.Fatal(err)
	}
	vm, fp, err := keys.VerifyManifest(body, sig, k.PublicKey())
	if err != nil || fp != k.Fingerprint() {
		t.Fatalf("verify manifest: %v (%s)", err, fp)
	}
	b, _ := os.ReadFile(out)
	if err := keys.CheckExport(vm, bytes.NewReader(b)); err != nil {
		t.Fatalf("check export: %v", err)
	}
	b[len(b)/2] ^= 1
	if err := keys.CheckExport(vm, bytes.NewReader(b)); !errors.Is(err, keys.ErrExportMismatch) {
		t.Fatalf("a flipped byte: %v", err)
	}
}

// checkScopeRefused: the store serves desk nothing outside r1's scope, and
// serves and releases nothing to any other node, even within it.
func checkScopeRefused(t *testing.T, ctx context.Context, desk, dcB, st1, dcA *Node, from, to time.Time) {
	t.Helper()
	call := func(by *Node, target, op string, q any) error {
		_, err := frames(ctx, by, target, op, q)
		return err
	}
	isDenied := func(what string, err error, want string) {
		t.Helper()
		var re *rpc.Error
		if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, want) {
			t.Errorf("%s: %v; want a denial saying %q", what, err, want)
		}
	}
	in := release.ScopeQuery{Request: "r1", Camera: "praha-1/entrance", From: from, To: to}
	other := release.ScopeQuery{Request: "r1", Camera: "praha-1/yard", From: from, To: to}
	earlier := release.ScopeQuery{Request: "r1", Camera: "praha-1/entrance", From: from.Add(-time.Hour), To: from.Add(-time.Minute)}
	for _, op := range []string{release.OpSegments, release.OpEpochs} {
		if err := call(desk, "store", op, in); err != nil {
			t.Errorf("%s in scope for desk: %v", op, err)
		}
		isDenied(op+" of another camera", call(desk, "store", op, other), "outside the scope")
		isDenied(op+" of an earlier time", call(desk, "store", op, earlier), "outside the scope")
		isDenied(op+" for dc-b", call(dcB, "store", op, in), "released to node desk, not to dc-b")
	}
	segs, err := st1.rec.Store().Segments("praha-1/entrance", from, to)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v", err)
	}
	rq := release.ReleaseQuery{Request: "r1", Camera: "praha-1/entrance", Segments: []time.Time{segs[0].Start}}
	isDenied("release to dc-b", call(dcB, "dc-a", release.OpRelease, rq), "released to node desk, not to dc-b")
	isDenied("release to the store", call(st1, "dc-b", release.OpRelease, rq), "released to node desk, not to store")
	// A datacenter serves its replica under the same rules.
	if err := call(desk, "dc-b", release.OpSegments, in); err != nil {
		t.Errorf("segments from dc-b's replica, in scope for desk: %v", err)
	}
	isDenied("segments from dc-b for the store", call(st1, "dc-b", release.OpSegments, in), "released to node desk, not to store")
	allow, deny := auditDecisions(t, st1, "serve-segments")
	if allow < 2 || deny < 3 {
		t.Errorf("store audit: %d segment serves allowed, %d denied; want ≥ 2 and ≥ 3", allow, deny)
	}
	_ = dcA
}

// checkOutsideRefused: the custodians answer for r1's segments only. The
// answers released for an in-scope segment do not open a replica segment
// outside the range (the last one recorded, the furthest out), and each
// datacenter refuses to answer for a segment that starts at or after the
// range's end, although it holds it.
func checkOutsideRefused(t *testing.T, ctx context.Context, desk, dcA, dcB, st1 *Node, from, to time.Time) {
	t.Helper()
	const cam = "praha-1/entrance"
	var in, out store.SegmentMeta
	waitTrue(t, 60*time.Second, "both datacenters to replicate a segment after the range", func() bool {
		segs, _ := st1.rec.Store().Segments(cam, from.Add(-time.Hour), time.Now().Add(time.Hour))
		found := false
		for _, s := range segs {
			if s.Start.Before(to) && s.End.After(from) && in.Start.IsZero() {
				in = s
			}
			if !s.Start.Before(to.Add(time.Second)) {
				out, found = s, true
			}
		}
		if !found {
			return false
		}
		for _, dc := range []*Node{dcA, dcB} {
			if held, _ := dc.replicas.Store().Segments(cam, out.Start, out.Start.Add(time.Nanosecond)); len(held) == 0 {
				return false
			}
		}
		return true
	})
	r := desk.Policy().Requests["r1"]
	rk := desk.relKeys.Get(r.Key)
	raw, err := st1.rec.Store().Epoch(cam, in.EpochStart)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sealedRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	o, err := keys.NewEpochOpener(rec)
	if err != nil {
		t.Fatal(err)
	}
	ctIn, err := innerCiphertext(st1.rec.Store().ReadSegment(in))
	if err != nil {
		t.Fatal(err)
	}
	var parts []*keys.Partial
	for _, dc := range []string{"dc-a", "dc-b"} {
		sealed, err := frames(ctx, desk, dc, release.OpRelease, release.ReleaseQuery{Request: "r1", Camera: cam, Segments: []time.Time{in.Start}})
		if err != nil || len(sealed) != 1 {
			t.Fatalf("%s's answer for an in-scope segment: %v", dc, err)
		}
		p, err := o.OpenPartial(rk, sealed[0], "r1", keys.SegmentRef{Camera: cam, Start: in.Start, End: in.End}, ctIn)
		if err != nil {
			t.Fatalf("%s's answer: %v", dc, err)
		}
		parts = append(parts, p)
	}
	if pt, err := o.DecryptSegment(ctIn, parts...); err != nil || len(pt) == 0 {
		t.Fatalf("the in-scope segment: %v", err)
	}
	ctOut, err := innerCiphertext(dcA.replicas.Store().ReadSegment(out))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.DecryptSegment(ctOut, parts...); err == nil {
		t.Fatal("the answers released for r1 opened a replica segment outside its range")
	}
	if rawOut, err := dcA.replicas.Store().Epoch(cam, out.EpochStart); err == nil {
		if recOut, err := sealedRecord(rawOut); err == nil {
			if oo, err := keys.NewEpochOpener(recOut); err == nil {
				if _, err := oo.DecryptSegment(ctOut, parts...); err == nil {
					t.Fatal("the answers released for r1 opened an outside segment under its own epoch")
				}
			}
		}
	}
	for _, p := range parts {
		p.Zero()
	}
	for _, dc := range []string{"dc-a", "dc-b"} {
		_, err := frames(ctx, desk, dc, release.OpRelease, release.ReleaseQuery{Request: "r1", Camera: cam, Segments: []time.Time{out.Start}})
		var re *rpc.Error
		if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, "outside the scope") {
			t.Errorf("%s answering for a segment %v after the range's end: %v", dc, out.Start.Sub(to), err)
		}
	}
}

// checkExportedOnce: r1's one-time key served its export and is gone. A
// second export, through the local API as custos export sends it, is a
// refusal (exit 4 in the CLI) naming the first, not a server error; desk
// lists r1 as exported, also after a restart of its release service.
func checkExportedOnce(t *testing.T, ctx context.Context, desk *Node, alice *keys.AdminKey, first string) {
	t.Helper()
	again := filepath.Join(t.TempDir(), "r1-again.ts")
	res, err := ExportVia(ctx, desk.cfg.Dir, order(t, alice, release.ExportRequest{Request: "r1", Out: again, Exporter: "alice"}))
	if err != nil {
		t.Fatalf("second export of r1: %v; want a refusal, not an error", err)
	}
	for _, want := range []string{`request "r1" was already exported at `, "on node desk by alice, to " + first} {
		if !strings.Contains(res.Refused, want) {
			t.Errorf("second export of r1 refused with %q; want it to say %q", res.Refused, want)
		}
	}
	if _, err := os.Stat(again); !errors.Is(err, os.ErrNotExist) {
		t.Error("the second export wrote a file")
	}
	list, err := FetchExported(ctx, desk.cfg.Dir)
	if err != nil || len(list) != 1 || list[0].Request != "r1" || list[0].Node != "desk" || list[0].File != first {
		t.Fatalf("desk's exports: %+v %v", list, err)
	}
	if again := newRelease(desk).Exported(); len(again) != 1 || again[0] != list[0] {
		t.Errorf("the exports read back from desk's directory: %+v, want %+v", again, list)
	}
}
