package release

// Export, the requester's side: under a releasable request whose one-time
// key this node holds, and only for the request's own requester, fetch the
// scope's epoch records (public) from each camera's store, fetch the scope's
// segments, and for each batch of segments have two custodians answer for
// each segment (datacenter.go; the recovery key's answers, when handed in,
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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

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

// Export runs an export; a policy refusal comes back as Refused. It stops
// when ctx or clients ends (clients ends when the node starts closing).
func (s *Service) Export(ctx, clients context.Context, req ExportRequest) (ExportResult, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(clients, cancel)()
	res, err := s.export(ctx, req, start)
	s.auditExport(req, res, err)
	var ref errRefused
	if errors.As(err, &ref) {
		return ExportResult{Refused: ref.reason}, nil
	}
	return res, err
}

func (s *Service) auditExport(req ExportRequest, res ExportResult, err error) {
	e := audit.Event{Actor: req.Exporter, Action: "export", Object: req.Request + " " + filepath.Base(req.Out), Decision: audit.Allow}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	} else if m := res.Manifest; m != nil {
		e.Reason = fmt.Sprintf("%d frames, %d bytes, sha256 %s, from %d segments", m.Output.Frames, m.Output.Bytes, m.Output.SHA256, len(m.Segments))
		if len(m.Gaps) > 0 {
			e.Reason += fmt.Sprintf(", with %d gaps (allowed by the order)", len(m.Gaps))
		}
	}
	s.d.Audit.Event(e)
}

// export does the work; policy refusals are errRefused.
func (s *Service) export(ctx context.Context, req ExportRequest, start time.Time) (ExportResult, error) {
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
	st, err := s.d.Policy.Sync(ctx)
	if err != nil {
		return ExportResult{}, err
	}
	if err := s.fresh(); err != nil {
		return ExportResult{}, err
	}
	if err := checkExportOrder(st, req, s.now()); err != nil {
		return ExportResult{}, err
	}
	if err := s.d.Audit.Ready(req.Exporter, "export", req.Request); err != nil {
		return ExportResult{}, err
	}
	if e, ok := s.exported.get(req.Request); ok {
		return ExportResult{}, errRefused{e.Sentence()}
	}
	r, rk, err := s.exportable(st, req.Request)
	if err != nil {
		return ExportResult{}, err
	}
	// A release belongs to its requester: anyone else is refused before
	// anything is fetched, and the one-time key stays for the requester.
	if req.Exporter != r.Requester {
		return ExportResult{}, errRefused{fmt.Sprintf("request %q was filed by %s; only its requester may export it, not %s", r.ID, r.Requester, req.Exporter)}
	}
	x := &exporter{s: s, st: st, r: r, rk: rk, openers: map[string]*keys.EpochOpener{}, epochs: map[string]*keys.SealedEpoch{},
		allowGaps: req.AllowGaps, progress: s.exports.start(r)}
	defer s.exports.end(r.ID)
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
	if err := s.exported.add(Exported{Request: r.ID, At: time.Now().UTC(), Node: m.ExporterNode, Exporter: req.Exporter, File: req.Out}); err != nil {
		s.cfg.Logf("node: export of %s: remembering it: %v (a second export is refused less clearly)", r.ID, err)
	}
	s.d.Keys.Drop(r.Key)
	return ExportResult{Manifest: m, Release: x.release, Total: time.Since(start), Ciphertext: x.ciphertext}, nil
}

// exportable checks that request id may be exported here now and returns
// it with its release key.
func (s *Service) exportable(st *policy.State, id string) (*policy.Request, *keys.ReleaseKey, error) {
	r, err := st.ReleasableRequest(id, s.now())
	if err != nil {
		return nil, nil, errRefused{err.Error()}
	}
	if self := s.d.Peers.Self(st); r.Node != self {
		return nil, nil, errRefused{fmt.Sprintf("request %q is released to node %s; export it there, not on %s", id, r.Node, self)}
	}
	rk := s.d.Keys.Get(r.Key)
	if rk == nil {
		return nil, nil, errRefused{fmt.Sprintf("this node holds no release key for request %q: it keeps one in memory only, and dropped it when it restarted; file a new request", id)}
	}
	return r, rk, nil
}

// exporter is one export in progress.
type exporter struct {
	progress  *exportTracker // shown in status while the export runs
	s         *Service
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

func (x *exporter) manifest(req ExportRequest) *keys.Manifest {
	approvers := make([]string, 0, len(x.r.Approvals))
	for _, a := range x.r.Approvals {
		approvers = append(approvers, a.User)
	}
	return &keys.Manifest{
		Version: keys.ManifestVersion, Federation: x.st.Federation, RequestID: x.r.ID, Requester: x.r.Requester,
		Approvers: approvers, Purpose: x.r.Purpose, Basis: x.r.Basis, Cameras: slices.Clone(x.r.Cameras),
		From: x.r.From, To: x.r.To, Exporter: req.Exporter, ExporterNode: x.s.d.Peers.Self(x.st), Created: time.Now().UTC(),
	}
}
