package node

// Export, the requester's side: under a releasable request whose one-time
// key this node holds, and only for the request's own requester, fetch the
// scope's epoch records (public) from each camera's store, fetch the scope's
// segments, and for each batch of segments have two custodians answer for
// each segment (release.go; the recovery key's answers, when handed in,
// count as one custodian), check each answer's proof, combine two into that
// segment's session key alone, decrypt in memory, keep the frames in
// [from, to) from the first keyframe at or after from, and mux them into one
// MPEG-TS file at the path the caller gave (the one plaintext a disk may
// get, invariant 1). No epoch key is ever rebuilt, here or anywhere; answers
// and plaintext buffers are wiped as soon as they are done with, and the
// release key when the export succeeds. A refused export (another user, a
// pending request) leaves the release key where it was.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

var (
	errNoPolicy    = errors.New("this node runs from a static peers file, not a replicated policy")
	errTooManyKeys = fmt.Errorf("this node already holds %d release keys", maxReleaseKeys)
)

// ExportRequest asks the node to export a request's footage. It is an
// order signed by the exporter (SignExport): the node serves it only to the
// request's requester, proven by their key, not by a name.
type ExportRequest struct {
	Request  string `json:"request"`
	Out      string `json:"out"`      // absolute path of the file to write; must not exist
	Exporter string `json:"exporter"` // the user who exports (who signs the manifest)
	// AllowGaps writes the export although footage the chain of custody
	// shows was recorded is missing or cannot be opened; every gap is
	// listed in the manifest. Without it such an export fails.
	AllowGaps bool      `json:"allow_gaps,omitempty"`
	Time      time.Time `json:"time"` // when the order was signed; it is good for policy.SignatureSkew
	Sig       []byte    `json:"sig"`  // the exporter's signature over exportOrder
}

// exportOrder is what an exporter signs: the federation, the request, the
// output path, whether gaps are allowed and the time, so an order cannot be
// reused for another request, file, federation or moment, nor turned into
// one that accepts missing footage.
func exportOrder(federation string, req ExportRequest) []byte {
	gaps := "complete"
	if req.AllowGaps {
		gaps = "allow-gaps"
	}
	return []byte("custos/export/v2\x00" + federation + "\x00" + req.Request + "\x00" + req.Out + "\x00" + req.Exporter + "\x00" +
		gaps + "\x00" + req.Time.UTC().Format(time.RFC3339Nano))
}

// SignExport signs req as its exporter, with k, for the federation fid.
func SignExport(k *keys.AdminKey, fid string, req *ExportRequest) error {
	req.Time = time.Now().UTC()
	sig, err := k.Sign(exportOrder(fid, *req), req.Time)
	if err != nil {
		return err
	}
	req.Sig = sig
	return nil
}

// checkExportOrder: the order is signed by the exporter's current key,
// recently.
func checkExportOrder(st *policy.State, req ExportRequest, now time.Time) error {
	u := st.Users[req.Exporter]
	if u == nil || u.Revoked {
		return errRefused{fmt.Sprintf("the exporter %q is not a user of the federation", req.Exporter)}
	}
	if d := now.Sub(req.Time); d > policy.SignatureSkew || d < -policy.SignatureSkew {
		return errRefused{fmt.Sprintf("the export order was signed at %s, more than %v from this node's clock: sign a new one", stamp(req.Time), policy.SignatureSkew)}
	}
	fp, err := policy.VerifySignature(u.PublicKey, exportOrder(st.FederationID, req), req.Sig, req.Time)
	if err == nil && fp != u.Fingerprint {
		err = errors.New("signed by another key")
	}
	if err != nil {
		return errRefused{fmt.Sprintf("the export order is not signed by %s's key: %v", req.Exporter, err)}
	}
	return nil
}

// ExportResult is the outcome of an export. Refused says why the policy
// did not allow it (nothing was written then).
type ExportResult struct {
	Refused  string         `json:"refused,omitempty"`
	Manifest *keys.Manifest `json:"manifest,omitempty"`
	// Release is the time spent getting the scope's epoch records and the
	// custodians' answers for every segment (the export's key-release part).
	Release time.Duration `json:"release_ns"`
	// Total is the whole export; Ciphertext the bytes fetched and decrypted.
	Total      time.Duration `json:"total_ns"`
	Ciphertext int64         `json:"ciphertext_bytes"`
}

// errRefused marks a policy refusal of an export.
type errRefused struct{ reason string }

func (e errRefused) Error() string { return e.reason }

// Export runs an export; a policy refusal comes back as Refused.
func (n *Node) Export(ctx context.Context, req ExportRequest) (ExportResult, error) {
	start := time.Now()
	if n.svc == nil {
		return ExportResult{}, errNoPolicy
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.svc.ctx, cancel)()
	res, err := n.export(ctx, req, start)
	n.auditExport(req, res, err)
	var ref errRefused
	if errors.As(err, &ref) {
		return ExportResult{Refused: ref.reason}, nil
	}
	return res, err
}

func (n *Node) auditExport(req ExportRequest, res ExportResult, err error) {
	e := audit.Event{Actor: req.Exporter, Action: "export", Object: req.Request + " " + filepath.Base(req.Out), Decision: audit.Allow}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	} else if m := res.Manifest; m != nil {
		e.Reason = fmt.Sprintf("%d frames, %d bytes, sha256 %s, from %d segments", m.Output.Frames, m.Output.Bytes, m.Output.SHA256, len(m.Segments))
		if len(m.Gaps) > 0 {
			e.Reason += fmt.Sprintf(", with %d gaps (allowed by the order)", len(m.Gaps))
		}
	}
	n.auditEvent(e)
}

// export does the work; policy refusals are errRefused.
func (n *Node) export(ctx context.Context, req ExportRequest, start time.Time) (ExportResult, error) {
	if !filepath.IsAbs(req.Out) || filepath.Clean(req.Out) != req.Out {
		return ExportResult{}, fmt.Errorf("output path %q must be absolute and clean", req.Out)
	}
	if _, err := os.Lstat(req.Out); err == nil {
		return ExportResult{}, fmt.Errorf("%s exists; refusing to overwrite it", req.Out)
	}
	if isMP4(req.Out) {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			return ExportResult{}, fmt.Errorf("an .mp4 export is remuxed by ffmpeg, which is not installed (apt-get install ffmpeg); or export to .ts")
		}
	}
	st, err := n.syncPolicy(ctx)
	if err != nil {
		return ExportResult{}, err
	}
	if err := checkExportOrder(st, req, time.Now()); err != nil {
		return ExportResult{}, err
	}
	if err := n.auditReady(req.Exporter, "export", req.Request); err != nil {
		return ExportResult{}, err
	}
	r, rk, err := n.exportable(st, req.Request)
	if err != nil {
		return ExportResult{}, err
	}
	// A release belongs to its requester: anyone else is refused before
	// anything is fetched, and the one-time key stays for the requester.
	if req.Exporter != r.Requester {
		return ExportResult{}, errRefused{fmt.Sprintf("request %q was filed by %s; only its requester may export it, not %s", r.ID, r.Requester, req.Exporter)}
	}
	x := &exporter{n: n, st: st, r: r, rk: rk, openers: map[string]*keys.EpochOpener{}, epochs: map[string]*keys.SealedEpoch{},
		allowGaps: req.AllowGaps, progress: n.exports.start(r)}
	defer n.exports.end(r.ID)
	t0 := time.Now()
	if err := x.loadEpochs(ctx); err != nil {
		return ExportResult{}, err
	}
	x.release += time.Since(t0)
	m, err := x.write(ctx, req)
	if err != nil {
		return ExportResult{}, err
	}
	m.Exporter = req.Exporter
	n.relKeys.drop(r.Key)
	return ExportResult{Manifest: m, Release: x.release, Total: time.Since(start), Ciphertext: x.ciphertext}, nil
}

// exportable checks that request id may be exported here now and returns
// it with its release key.
func (n *Node) exportable(st *policy.State, id string) (*policy.Request, *keys.ReleaseKey, error) {
	r, err := st.ReleasableRequest(id, time.Now())
	if err != nil {
		return nil, nil, errRefused{err.Error()}
	}
	if self := n.selfName(st); r.Node != self {
		return nil, nil, errRefused{fmt.Sprintf("request %q is released to node %s; export it there, not on %s", id, r.Node, self)}
	}
	rk := n.relKeys.get(r.Key)
	if rk == nil {
		return nil, nil, fmt.Errorf("this node holds no release key for request %q (it was dropped: the node restarted, or the request was already exported)", id)
	}
	return r, rk, nil
}

// exporter is one export in progress.
type exporter struct {
	progress  *exportTracker // shown in status while the export runs
	n         *Node
	st        *policy.State
	r         *policy.Request
	rk        *keys.ReleaseKey
	openers   map[string]*keys.EpochOpener // by camera and epoch start; public
	epochs    map[string]*keys.SealedEpoch // the same records, with their seals
	allowGaps bool
	gaps      []keys.ManifestGap
	// unreachable: stores this export could not reach, and why; they
	// are not dialled again, the replicas stand in.
	unreachable map[string]error
	ciphertext  int64
	release     time.Duration // spent on epoch records and custodians' answers
}

func epochID(camera string, start time.Time) string { return camera + "@" + stamp(start) }

// segmentID names a segment by camera and start, to the nanosecond.
func segmentID(camera string, start time.Time) string { return camera + "@" + stamp(start) }

// storeOf is the live store of camera's site.
func storeOf(st *policy.State, camera string) (string, error) {
	c := st.Cameras[camera]
	if c == nil {
		return "", fmt.Errorf("camera %s is no longer in the policy", camera)
	}
	var names []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleStore && nd.Site == c.Site && policy.Member(st, name, time.Now()) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("site %s has no live store to fetch %s from", c.Site, camera)
	}
	sort.Strings(names)
	return names[0], nil
}

// loadEpochs fetches and checks the epoch records of every camera in scope.
func (x *exporter) loadEpochs(ctx context.Context) error {
	for _, cam := range x.r.Cameras {
		recs, err := x.fetchEpochs(ctx, cam)
		if err != nil {
			return err
		}
		for _, b := range recs {
			// Only a record a store of the camera's site sealed is
			// used, whoever served it (node/custody.go).
			e, err := custody.VerifyEpoch(x.st, cam, b)
			if err != nil {
				return fmt.Errorf("epoch record of %s as served: %w", cam, err)
			}
			o, err := keys.NewEpochOpener(e.Record)
			if err != nil {
				return err
			}
			x.openers[epochID(cam, e.Record.Start)] = o
			x.epochs[epochID(cam, e.Record.Start)] = e
		}
	}
	return nil
}

// scopeCall runs a store op for camera over the request's range.
func (x *exporter) scopeCall(ctx context.Context, camera, op string) (*rpc.Reader, *mesh.QUICConn, error) {
	storeName, err := storeOf(x.st, camera)
	if err != nil {
		return nil, nil, err
	}
	q := scopeQuery{Request: x.r.ID, Camera: camera, From: x.r.From, To: x.r.To}
	if why := x.unreachable[storeName]; why != nil {
		err = why // found unreachable earlier in this export: not waited for again
	} else {
		// A live store answers within a WireGuard handshake and its
		// retry; waiting longer for the dial only delays the replicas.
		dctx, cancel := context.WithTimeout(ctx, storeDialTimeout)
		conn, derr := x.n.dialNode(dctx, x.st, storeName)
		cancel()
		if derr == nil {
			rd, cerr := rpc.CallJSON(ctx, conn, op, q)
			if cerr == nil {
				return rd, conn, nil
			}
			derr = cerr
		}
		err = fmt.Errorf("store %s: %w", storeName, derr)
		var re *rpc.Error
		if errors.As(err, &re) || ctx.Err() != nil {
			return nil, nil, err // the store answered: its answer stands
		}
		if x.unreachable == nil {
			x.unreachable = map[string]error{}
		}
		x.unreachable[storeName] = err
	}
	// The store is unreachable (stolen, burnt, offline): the datacenters'
	// replicas hold the same ciphertext.
	for _, dc := range replicaHolders(x.st) {
		rd, conn, derr := x.n.callNode(ctx, x.st, dc, op, q)
		if derr == nil {
			x.n.logf("node: export %s: %s is unreachable; reading %s's replica of %s", x.r.ID, storeName, dc, camera)
			return rd, conn, nil
		}
		err = fmt.Errorf("%w; datacenter %s: %w", err, dc, derr)
	}
	return nil, nil, err
}

// replicaSegment reads the segment bad names from a datacenter's replica,
// for a store that holds it but cannot read it intact. The copy must have
// the SHA-256 the store's index gave.
func (x *exporter) replicaSegment(ctx context.Context, cam string, bad segmentHeader) ([]byte, error) {
	from, to, ok := x.r.Clip(bad.Start, bad.End)
	if !ok {
		return nil, fmt.Errorf("segment %s %s is outside the request", cam, stamp(bad.Start))
	}
	q := scopeQuery{Request: x.r.ID, Camera: cam, From: from, To: to}
	var errs []string
	for _, dc := range replicaHolders(x.st) {
		ct, err := x.segmentFrom(ctx, dc, q, bad)
		if err == nil {
			x.n.logf("node: export %s: segment %s %s is corrupt on its store; read %s's replica", x.r.ID, cam, stamp(bad.Start), dc)
			return ct, nil
		}
		errs = append(errs, dc+": "+err.Error())
	}
	return nil, fmt.Errorf("segment %s %s is corrupt on its store (%s) and no replica holds an intact copy (%s)",
		cam, stamp(bad.Start), bad.Corrupt, strings.Join(errs, "; "))
}

// segmentFrom reads from node the segment of q that bad names.
func (x *exporter) segmentFrom(ctx context.Context, node string, q scopeQuery, bad segmentHeader) ([]byte, error) {
	rd, conn, err := x.n.callNode(ctx, x.st, node, opSegments, q)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	for {
		hb, err := rd.Next()
		if err == io.EOF {
			return nil, errors.New("it does not hold the segment")
		}
		if err != nil {
			return nil, err
		}
		var h segmentHeader
		if len(hb) > maxSegmentHeader || strictJSON(hb, &h) != nil {
			return nil, errors.New("a bad segment header")
		}
		if h.Corrupt != "" {
			if h.Start.Equal(bad.Start) {
				return nil, errors.New("its copy is corrupt too")
			}
			continue
		}
		ct, err := rd.Next()
		if err != nil {
			return nil, err
		}
		if !h.Start.Equal(bad.Start) {
			continue
		}
		if h.SHA256 != bad.SHA256 {
			return nil, errors.New("its copy has another SHA-256 than the store's index")
		}
		return ct, checkSegmentSum(h, ct)
	}
}

// replicaHolders are the datacenters that may hold replicas, by name.
func replicaHolders(st *policy.State) []string {
	var out []string
	for name := range st.Nodes {
		if policy.ReplicaTarget(st, name, time.Now()) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// fetchEpochs gets camera's epoch records in scope from its store.
func (x *exporter) fetchEpochs(ctx context.Context, camera string) ([][]byte, error) {
	rd, conn, err := x.scopeCall(ctx, camera, opEpochs)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	return rpc.ReadFrames(rd, 0)
}

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
	h    segmentHeader
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
		msg := x.n.relKeys.recoveredPartial(x.r.Key, segmentID(cam, p.h.Start))
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
	for _, c := range custodians(x.st) {
		var idx []int
		for i := range batch {
			if len(parts[i]) < keys.EpochThreshold {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			break
		}
		q := releaseQuery{Request: x.r.ID, Camera: cam}
		for _, i := range idx {
			q.Segments = append(q.Segments, batch[i].h.Start)
		}
		sealed, err := x.askCustodian(ctx, c, q)
		if err == nil && len(sealed) != len(idx) {
			err = fmt.Errorf("answered %d segments of %d", len(sealed), len(idx))
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", c, err))
			continue
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
			parts[i] = append(parts[i], a)
		}
		if missing > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d segments not replicated there yet", c, missing))
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

func zeroAnswers(parts [][]*keys.Partial) {
	for _, ps := range parts {
		for _, p := range ps {
			p.Zero()
		}
	}
}

// askCustodian runs the release op on custodian c (directly when c is this
// node).
func (x *exporter) askCustodian(ctx context.Context, c string, q releaseQuery) ([][]byte, error) {
	if c == x.n.selfName(x.st) {
		return x.n.releasePartials(x.st, c, q)
	}
	rd, conn, err := x.n.callNode(ctx, x.st, c, opRelease, q)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	return rpc.ReadFrames(rd, len(q.Segments))
}

// output is the export file being written: a temporary file beside the
// destination, hashed as it is written.
type output struct {
	f      *os.File
	h      hash.Hash
	n      int64
	frames int
	mux    ts.Muxer
	buf    []byte
}

func (o *output) writeFrame(f tsFrame) error {
	var err error
	o.buf, err = o.mux.AppendFrame(o.buf[:0], h264.Frame{Time: timeOfTicks(f.Ticks), Key: f.Key, Data: f.Data})
	if err != nil {
		return err
	}
	o.h.Write(o.buf)
	if _, err := o.f.Write(o.buf); err != nil {
		return err
	}
	clear(o.buf)
	o.n += int64(len(o.buf))
	o.frames++
	return nil
}

// write fetches, decrypts and trims every camera's segments into the
// output file and returns the manifest (without the exporter). The file is
// built unnamed (O_TMPFILE) and linked in at the path asked only when it is
// whole: a crash leaves no plaintext behind under any name, and a file that
// appeared at that path meanwhile is never overwritten (link, not rename).
func (x *exporter) write(ctx context.Context, req ExportRequest) (*keys.Manifest, error) {
	f, err := unnamedFile(filepath.Dir(req.Out))
	if err != nil {
		return nil, fmt.Errorf("export file: %w", err)
	}
	defer f.Close()
	o := &output{f: f, h: sha256.New()}
	m := x.manifest(req)
	for _, cam := range x.r.Cameras {
		segs, err := x.camera(ctx, cam, o)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, segs...)
	}
	m.Gaps = x.gaps
	if o.frames == 0 {
		return nil, fmt.Errorf("no decodable footage in %s…%s (no keyframe recorded in the range?)", stamp(x.r.From), stamp(x.r.To))
	}
	sum, size := hex.EncodeToString(o.h.Sum(nil)), o.n
	if isMP4(req.Out) {
		if sum, size, err = remuxMP4(ctx, f, req.Out); err != nil {
			return nil, err
		}
	} else if err := publish(f, req.Out); err != nil {
		return nil, err
	}
	m.Output = keys.ManifestOutput{Name: filepath.Base(req.Out), Bytes: size, SHA256: sum, Frames: o.frames}
	return m, nil
}

// unnamedFile opens a new file in dir that has no name (O_TMPFILE, 0600):
// it disappears with the process unless publish links it in.
func unnamedFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("an unnamed file in %s (O_TMPFILE, which the export needs so that no plaintext is left behind): %w", dir, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed export)")), nil
}

// publish syncs f and gives it the name dst, failing if dst exists.
func publish(f *os.File, dst string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s appeared while the export ran; refusing to overwrite it", dst)
	}
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	return nil
}

func isMP4(path string) bool { return strings.EqualFold(filepath.Ext(path), ".mp4") }

// remuxMP4 copies the MPEG-TS export in src into an MP4 at dst with ffmpeg
// (no re-encoding: the same frames) and returns its SHA-256 and size. ffmpeg
// reads and writes unnamed files it is handed as descriptors, so neither
// the TS nor the MP4 has a name before the MP4 is whole.
func remuxMP4(ctx context.Context, src *os.File, dst string) (string, int64, error) {
	out, err := unnamedFile(filepath.Dir(dst))
	if err != nil {
		return "", 0, err
	}
	defer out.Close()
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	// -y: /dev/fd/4 exists (it is our unnamed file), so ffmpeg must write
	// to it rather than ask.
	cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "mpegts", "-i", "/dev/fd/3",
		"-c", "copy", "-movflags", "+faststart", "-f", "mp4", "/dev/fd/4")
	cmd.ExtraFiles = []*os.File{src, out}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("remux to mp4 with ffmpeg: %v: %s", err, strings.TrimSpace(string(b)))
	}
	fi, err := out.Stat()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(out, 0, fi.Size())); err != nil {
		return "", 0, fmt.Errorf("remux to mp4: %w", err)
	}
	if err := publish(out, dst); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), fi.Size(), nil
}

func (x *exporter) manifest(req ExportRequest) *keys.Manifest {
	approvers := make([]string, 0, len(x.r.Approvals))
	for _, a := range x.r.Approvals {
		approvers = append(approvers, a.User)
	}
	return &keys.Manifest{
		Version: keys.ManifestVersion, Federation: x.st.Federation, RequestID: x.r.ID, Requester: x.r.Requester,
		Approvers: approvers, Purpose: x.r.Purpose, Basis: x.r.Basis, Cameras: slices.Clone(x.r.Cameras),
		From: x.r.From, To: x.r.To, Exporter: req.Exporter, ExporterNode: x.n.selfName(x.st), Created: time.Now().UTC(),
	}
}

// camera streams camera's segments from its store into o and returns the
// manifest entries of those that gave frames. Every segment must carry a
// store's seal that verifies, name the epoch record it is opened with, and
// continue the camera's chain (custodyChain); what the chain shows missing,
// or what cannot be opened, fails the export unless gaps are allowed.
func (x *exporter) camera(ctx context.Context, cam string, o *output) ([]keys.ManifestSegment, error) {
	rd, conn, err := x.scopeCall(ctx, cam, opSegments)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	from, to := ticksOf(x.r.From), ticksOf(x.r.To)
	started := false
	var out []keys.ManifestSegment
	var batch []pendingSegment
	chain := custodyChain{camera: cam}
	held := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		parts, short, err := x.answers(ctx, cam, batch)
		if err != nil {
			return err
		}
		defer zeroAnswers(parts)
		for i, p := range batch {
			if why, ok := short[i]; ok {
				x.gap(cam, p.link.Start, p.link.End, 1, fmt.Sprintf("segment %d of store %s (%s): %s", p.link.Seq, p.link.Store, stamp(p.link.Start), why))
				started = false // the next frames need a keyframe again
				continue
			}
			ms, used, err := x.segment(p, parts[i], cam, from, to, &started, o)
			if err != nil {
				return err
			}
			if used {
				out = append(out, ms)
			}
		}
		batch, held = batch[:0], 0
		return nil
	}
	for {
		hb, err := rd.Next()
		if err == io.EOF {
			if err := flush(); err != nil {
				return nil, err
			}
			if chain.pending != "" {
				// Skipped at the end of the range: nothing after it to
				// count from.
				from := x.r.From
				if chain.prev != nil {
					from = chain.prev.End
				}
				x.gap(cam, from, x.r.To, 0, chain.pending)
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var h segmentHeader
		if len(hb) > maxSegmentHeader || strictJSON(hb, &h) != nil {
			return nil, errors.New("store sent a bad segment header")
		}
		var sealed []byte
		if h.Corrupt != "" {
			// The store's copy is damaged: a replica's, with the hash
			// the store's index gave, stands in.
			if sealed, err = x.replicaSegment(ctx, cam, h); err != nil {
				if !x.allowGaps {
					return nil, fmt.Errorf("%w; or export with --allow-gaps to write the rest with this gap listed", err)
				}
				chain.pending = err.Error()
				continue
			}
		} else if sealed, err = rd.Next(); err != nil {
			return nil, fmt.Errorf("segment %s: %w", stamp(h.Start), err)
		}
		if err := checkSegmentSum(h, sealed); err != nil {
			return nil, err
		}
		x.ciphertext += int64(len(sealed))
		ep := x.epochs[epochID(cam, h.EpochStart)]
		g, err := custody.VerifySegment(x.st, cam, sealed, ep)
		if err == nil && (!g.Link.Start.Equal(h.Start) || !g.Link.End.Equal(h.End) || !g.Link.EpochStart.Equal(h.EpochStart)) {
			err = fmt.Errorf("segment %s %s: its signed link says %s…%s: %w", cam, stamp(h.Start), stamp(g.Link.Start), stamp(g.Link.End), custody.ErrBroken)
		}
		if err != nil {
			// Made up, altered or moved: never exported. Without
			// --allow-gaps the export fails; with it the footage is a
			// gap, and the chain check names what is missing.
			if !x.allowGaps {
				return nil, fmt.Errorf("segment %s of %s as served is not the store's: %w", stamp(h.Start), cam, err)
			}
			chain.pending = "a segment that did not verify was served in its place: " + err.Error()
			continue
		}
		if gap, err := chain.next(&g.Link); err != nil {
			return nil, err
		} else if gap != nil {
			if !x.allowGaps {
				return nil, fmt.Errorf("%s %s…%s: %s; export with --allow-gaps to write the rest with this gap listed",
					cam, stamp(gap.From), stamp(gap.To), gap.Reason)
			}
			x.gap(gap.Camera, gap.From, gap.To, gap.Missing, gap.Reason)
		}
		if ep == nil {
			// Encrypted to an epoch that does not overlap the scope: it
			// starts before from, and its frames from the next keyframe
			// on are in the next segment. Its link still counts in the
			// chain.
			continue
		}
		batch = append(batch, pendingSegment{h: h, link: g.Link, ct: g.Ciphertext, o: x.openers[epochID(cam, h.EpochStart)]})
		held += len(sealed)
		if len(batch) == releaseBatch || held >= maxBatchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
}

// gap lists footage the export lacks. The reason may quote a peer's
// error: it is made printable and bounded for the manifest.
func (x *exporter) gap(cam string, from, to time.Time, missing uint64, why string) {
	why = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(why, "?"))
	for len(why) > 1000 {
		_, n := utf8.DecodeLastRuneInString(why)
		why = why[:len(why)-n]
	}
	x.gaps = append(x.gaps, keys.ManifestGap{Camera: cam, From: from, To: to, Missing: missing, Reason: why})
}

// custodyChain follows one camera's links in the order served: each must
// be the next of its store's chain. A sequence number that goes back or
// repeats, or a link that names another predecessor than the one served
// before it, is tampering and fails the export whatever the order allows;
// a sequence number that jumps is footage removed after it was stored, a
// gap.
type custodyChain struct {
	camera  string
	prev    *keys.SegmentLink
	pending string // why the segment skipped before this one is missing
}

func (c *custodyChain) next(l *keys.SegmentLink) (*keys.ManifestGap, error) {
	prev, why := c.prev, c.pending
	c.pending = ""
	if prev == nil {
		c.prev = l
		if why != "" {
			return &keys.ManifestGap{Camera: c.camera, From: l.Start, To: l.Start, Reason: why}, nil
		}
		return nil, nil
	}
	if l.Store != prev.Store || l.Seq == 0 && l.Prev == [32]byte{} {
		c.prev = l
		if why == "" {
			why = fmt.Sprintf("the chain of custody restarts (store %s, sequence %d after store %s's %d): footage between may be missing",
				l.Store, l.Seq, prev.Store, prev.Seq)
		}
		return &keys.ManifestGap{Camera: c.camera, From: prev.End, To: l.Start, Reason: why}, nil
	}
	switch {
	case l.Seq <= prev.Seq || l.Start.Before(prev.Start):
		return nil, fmt.Errorf("segment %s of %s is out of order: sequence %d served after %d (reordered or replayed): %w",
			stamp(l.Start), c.camera, l.Seq, prev.Seq, custody.ErrBroken)
	case l.Seq == prev.Seq+1 && l.Prev != prev.Hash():
		return nil, fmt.Errorf("segment %s of %s (sequence %d) does not chain onto the segment before it: %w",
			stamp(l.Start), c.camera, l.Seq, custody.ErrBroken)
	}
	c.prev = l
	missing := l.Seq - prev.Seq - 1
	if missing > 0 && why == "" {
		why = fmt.Sprintf("%d segments of store %s's chain (sequence %d to %d) are missing", missing, l.Store, prev.Seq+1, l.Seq-1)
	}
	if why != "" {
		// Also with nothing missing from the chain: a segment was served
		// here that is not the store's, and it was left out.
		return &keys.ManifestGap{Camera: c.camera, From: prev.End, To: l.Start, Missing: missing, Reason: why}, nil
	}
	return nil, nil
}

// storeDialTimeout bounds the wait for a camera's store before an export
// turns to the datacenters' replicas.
const storeDialTimeout = 8 * time.Second

// maxBatchBytes bounds the ciphertext held while a batch waits for its
// answers.
const maxBatchBytes = 64 << 20

// segment decrypts one segment and writes its in-scope frames. Every
// frame's time must lie in the span the store signed.
func (x *exporter) segment(p pendingSegment, parts []*keys.Partial, cam string, from, to int64, started *bool, o *output) (keys.ManifestSegment, bool, error) {
	l := &p.link
	pt, err := p.o.DecryptSegment(p.ct, parts...)
	if err != nil {
		return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: %w", stamp(l.Start), cam, err)
	}
	x.progress.add(cam, l.End, int64(len(p.ct)))
	defer clear(pt)
	psum := sha256.Sum256(pt)
	frames, err := demuxTS(pt, l.Start)
	defer clearFrames(frames)
	if err != nil {
		return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: %w", stamp(l.Start), cam, err)
	}
	lo, hi := ticksOf(l.Start), ticksOf(l.End)
	for _, f := range frames {
		if f.Ticks < lo || f.Ticks > hi {
			return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: a frame at %s lies outside the span its store signed (%s…%s): %w",
				stamp(l.Start), cam, stamp(timeOfTicks(f.Ticks)), stamp(l.Start), stamp(l.End), custody.ErrBroken)
		}
	}
	used := false
	for _, f := range frames {
		if f.Ticks < from || f.Ticks >= to {
			continue
		}
		if !*started && !f.Key {
			continue // cannot decode before the first keyframe in range
		}
		*started = true
		if err := o.writeFrame(f); err != nil {
			return keys.ManifestSegment{}, false, fmt.Errorf("export file: %w", err)
		}
		used = true
	}
	lh := l.Hash()
	return keys.ManifestSegment{Camera: cam, Start: l.Start, End: l.End,
		CiphertextSHA256: p.h.SHA256, PlaintextSHA256: hex.EncodeToString(psum[:]),
		Store: l.Store, Seq: l.Seq, Link: hex.EncodeToString(lh[:])}, used, nil
}

// ExportProgress is a running export, as status shows it: how much of the
// requested footage (per camera, by time) is written.
type ExportProgress struct {
	Request  string  `json:"request"`
	Fraction float64 `json:"fraction"` // 0..1
	Bytes    int64   `json:"ciphertext_bytes"`
}

// exportTracker follows one running export.
type exportTracker struct {
	mu      sync.Mutex
	p       ExportProgress
	from    time.Time
	span    time.Duration // of one camera's range
	cameras int
	done    map[string]time.Duration // per camera, footage covered
}

func (p *exportTracker) add(cam string, end time.Time, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Bytes += n
	if d := min(end.Sub(p.from), p.span); d > p.done[cam] {
		p.done[cam] = d
	}
	var sum time.Duration
	for _, d := range p.done {
		sum += d
	}
	p.p.Fraction = float64(sum) / float64(p.span*time.Duration(p.cameras))
}

func (p *exportTracker) snapshot() ExportProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

// exportsRunning are this node's exports in progress.
type exportsRunning struct {
	mu  sync.Mutex
	ids map[string]*exportTracker
}

func (e *exportsRunning) start(r *policy.Request) *exportTracker {
	p := &exportTracker{p: ExportProgress{Request: r.ID}, from: r.From, span: max(r.To.Sub(r.From), time.Nanosecond),
		cameras: max(len(r.Cameras), 1), done: map[string]time.Duration{}}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ids == nil {
		e.ids = map[string]*exportTracker{}
	}
	e.ids[r.ID] = p
	return p
}

func (e *exportsRunning) end(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.ids, id)
}

func (e *exportsRunning) list() []ExportProgress {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ExportProgress, 0, len(e.ids))
	for _, p := range e.ids {
		out = append(out, p.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Request < out[j].Request })
	return out
}
