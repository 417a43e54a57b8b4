package release

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// In-memory twins of the node's parts the release service uses.

type policyTwin struct{ st *policy.State }

func (p policyTwin) State() *policy.State                        { return p.st }
func (p policyTwin) Changed() <-chan struct{}                    { return nil }
func (p policyTwin) Sync(context.Context) (*policy.State, error) { return p.st, nil }

// peersTwin knows the members by key, as the node's callerName does, and
// reaches none of them.
type peersTwin struct {
	self  string
	names map[keys.NodePublic]string
}

func (p peersTwin) Caller(st *policy.State, peer keys.NodePublic) (string, error) {
	name := p.names[peer]
	if name == "" || !policy.Member(st, name, time.Now()) {
		return "", &rpc.Error{Code: rpc.Denied, Message: "you are not a live member of the federation"}
	}
	return name, nil
}

func (p peersTwin) Self(*policy.State) string { return p.self }

func (peersTwin) Dial(context.Context, *policy.State, string) (*mesh.QUICConn, error) {
	return nil, errors.New("no mesh in a unit test")
}

func (peersTwin) Call(context.Context, *policy.State, string, string, any) (*rpc.Reader, *mesh.QUICConn, error) {
	return nil, nil, errors.New("no mesh in a unit test")
}

// auditTwin keeps the events it is given.
type auditTwin struct{ events []audit.Event }

func (a *auditTwin) Event(e audit.Event) { a.events = append(a.events, e) }
func (a *auditTwin) Serve(actor, action, object string, err error, detail string) {
	e := audit.Event{Actor: actor, Action: action, Object: object, Decision: audit.Allow, Reason: detail}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	a.Event(e)
}
func (a *auditTwin) Ready(string, string, string) error { return nil }

func (a *auditTwin) count(action, d string) int {
	n := 0
	for _, e := range a.events {
		if e.Action == action && e.Decision == d {
			n++
		}
	}
	return n
}

// mediaTwin is one camera's footage in memory; reads counts what was read.
type mediaTwin struct {
	segs  []store.SegmentMeta
	data  map[int64][]byte
	bad   map[int64]bool // copies that cannot be read intact
	reads int
}

func (m *mediaTwin) Epochs(string, time.Time, time.Time) ([]store.EpochMeta, error) { return nil, nil }
func (m *mediaTwin) Epoch(string, time.Time) ([]byte, error) {
	return nil, store.ErrNotFound
}

// Segments lists the segments that overlap [from, to), as the store does.
func (m *mediaTwin) Segments(camera string, from, to time.Time) ([]store.SegmentMeta, error) {
	var out []store.SegmentMeta
	for _, s := range m.segs {
		if s.Camera == camera && s.Start.Before(to) && s.End.After(from) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (m *mediaTwin) ReadSegment(meta store.SegmentMeta) ([]byte, error) {
	m.reads++
	if m.bad[meta.Start.UnixNano()] {
		return nil, errors.New("ciphertext does not match its SHA-256")
	}
	return m.data[meta.Start.UnixNano()], nil
}

type holdingsTwin struct{ served, replicas *mediaTwin }

func (h holdingsTwin) Served() Media {
	if h.served == nil {
		return nil
	}
	return h.served
}

func (h holdingsTwin) Replicas() Media {
	if h.replicas == nil {
		return nil
	}
	return h.replicas
}

type framesTwin struct{ frames [][]byte }

func (f *framesTwin) WriteFrame(p []byte) error {
	f.frames = append(f.frames, append([]byte(nil), p...))
	return nil
}

// twinFed is a federation as the release service sees it: desk holds the
// approved request r1 for praha-1/entrance over [from, to); dc-a is a
// custodian; dc-b a datacenter that asks for what is not its.
type twinFed struct {
	st       *policy.State
	from, to time.Time
	desk     keys.NodePublic
	dcB      keys.NodePublic
	media    *mediaTwin
	audit    *auditTwin
	corrupt  atomic.Uint64
	logged   []string
	svc      *Service
}

const testCamera = "praha-1/entrance"

func newTwinFed(t *testing.T, self string) *twinFed {
	t.Helper()
	now := time.Now()
	f := &twinFed{from: now.Add(-time.Hour), to: now.Add(-time.Hour + 12*time.Second),
		desk: keys.NewNodePrivate().Public(), dcB: keys.NewNodePrivate().Public(), audit: &auditTwin{}}
	ck, err := keys.NewCustodianKey("dc-a")
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Zero()
	f.st = &policy.State{
		Federation: "acme",
		Nodes: map[string]*policy.Node{
			"desk":  {Name: "desk", Role: policy.RoleAdminNode},
			"dc-a":  {Name: "dc-a", Role: policy.RoleDatacenter, Custodian: ck.Custodian().PublicKey()},
			"dc-b":  {Name: "dc-b", Role: policy.RoleDatacenter},
			"store": {Name: "store", Role: policy.RoleStore, Site: "praha-1"},
		},
		Users: map[string]*policy.User{
			"alice": {Name: "alice", Role: policy.UserAdmin, Fingerprint: "fa"},
			"bob":   {Name: "bob", Role: policy.UserApprover, Fingerprint: "fb"},
			"carol": {Name: "carol", Role: policy.UserApprover, Fingerprint: "fc"},
		},
		Cameras: map[string]*policy.Camera{testCamera: {Site: "praha-1", Name: "entrance"}, "praha-1/yard": {Site: "praha-1", Name: "yard"}},
		Requests: map[string]*policy.Request{"r1": {ID: "r1", Requester: "alice", Node: "desk", Selector: testCamera, Cameras: []string{testCamera},
			From: f.from, To: f.to, Expires: now.Add(time.Hour), Key: releasePublicHex(t),
			Approvals: []policy.Approval{{Request: "r1", User: "bob", Key: "fb"}, {Request: "r1", User: "carol", Key: "fc"}}}},
	}
	// Four-second segments: one before the range, three in it, one after.
	f.media = &mediaTwin{data: map[int64][]byte{}, bad: map[int64]bool{}}
	for i := -1; i <= 3; i++ {
		start := f.from.Add(time.Duration(i) * 4 * time.Second)
		ct := []byte(fmt.Sprintf("ciphertext %d", i))
		f.media.segs = append(f.media.segs, store.SegmentMeta{Camera: testCamera, Start: start, End: start.Add(4 * time.Second),
			EpochStart: f.from.Add(-time.Minute), Size: int64(len(ct)), SHA256: sha256.Sum256(ct)})
		f.media.data[start.UnixNano()] = ct
	}
	holdings := holdingsTwin{served: f.media}
	if self != "store" {
		holdings = holdingsTwin{served: f.media, replicas: f.media}
	}
	f.svc = New(Config{Name: self, CustodianKey: filepath.Join(t.TempDir(), "custodian.key"), Corrupt: &f.corrupt,
		Logf: func(format string, a ...any) { f.logged = append(f.logged, fmt.Sprintf(format, a...)) }},
		Deps{Policy: policyTwin{f.st}, Peers: peersTwin{self: self, names: map[keys.NodePublic]string{f.desk: "desk", f.dcB: "dc-b"}},
			Audit: f.audit, Holdings: holdings, Keys: NewKeys()})
	return f
}

func releasePublicHex(t *testing.T) string {
	t.Helper()
	k, err := keys.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zero()
	return k.PublicHex()
}

func body(q any) []byte {
	b, _ := json.Marshal(q)
	return b
}

func isDenied(t *testing.T, what string, err error, want string) {
	t.Helper()
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, want) {
		t.Errorf("%s: %v; want a denial saying %q", what, err, want)
	}
}
