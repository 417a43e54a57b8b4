package live

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// twinPolicy is a policy replica that never changes.
type twinPolicy struct{ st *policy.State }

func (p twinPolicy) State() *policy.State     { return p.st }
func (p twinPolicy) Changed() <-chan struct{} { return nil }

// twinJournal keeps the events in memory; ready, if set, is why it cannot
// record.
type twinJournal struct {
	mu     sync.Mutex
	events []audit.Event
	ready  error
}

func (j *twinJournal) Event(e audit.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *twinJournal) Ready(actor, action, object string) error { return j.ready }

// twinHubs counts the lookups of the store's rings.
type twinHubs struct {
	hub     *media.Live
	lookups int
}

func (h *twinHubs) LiveHub(camera string) *media.Live {
	h.lookups++
	return h.hub
}

const cam = "praha-1/entrance"

// testServer is the store's live server for node desk, in a policy whose
// grants are given.
func testServer(grants map[string]*policy.Grant) (*Server, *twinJournal, *twinHubs) {
	st := &policy.State{
		Federation: "acme",
		Nodes: map[string]*policy.Node{
			"store": {Name: "store", Role: policy.RoleStore, Site: "praha-1"},
			"desk":  {Name: "desk", Role: policy.RoleAdminNode},
		},
		Cameras: map[string]*policy.Camera{cam: {Site: "praha-1", Name: "entrance", Source: "synthetic:"}},
		Grants:  grants,
	}
	j := &twinJournal{}
	h := &twinHubs{hub: media.NewLive(cam, media.LiveConfig{})}
	s := &Server{Policy: twinPolicy{st}, Audit: j, Hubs: h,
		Caller: func(*policy.State, keys.NodePublic) (string, error) { return "desk", nil }}
	return s, j, h
}

func rpcCode(t *testing.T, err error) rpc.Code {
	t.Helper()
	var re *rpc.Error
	if !errors.As(err, &re) {
		t.Fatalf("%v is no rpc error", err)
	}
	return re.Code
}

// A viewer the policy gives no grant on the camera is refused before the
// store looks for the camera's ring, and the refusal is audited with who,
// what and why.
func TestLiveRefusesWithoutGrant(t *testing.T) {
	s, j, h := testServer(nil)
	defer h.hub.Close()
	err := s.Handle(context.Background(), keys.NodePublic{}, []byte(`{"camera":"`+cam+`"}`), nil)
	if rpcCode(t, err) != rpc.Denied || !strings.Contains(err.Error(), "live view of "+cam) || !strings.Contains(err.Error(), "no grant") {
		t.Fatalf("got %v, want a denial for want of a grant", err)
	}
	if h.lookups != 0 {
		t.Errorf("the store looked up the camera's ring %d times before deciding", h.lookups)
	}
	if len(j.events) != 1 {
		t.Fatalf("audit %+v, want one denial", j.events)
	}
	e := j.events[0]
	if e.Actor != "node:desk" || e.Action != "live-view" || e.Object != cam || e.Decision != audit.Deny || !strings.Contains(e.Reason, "no grant") {
		t.Errorf("audit %+v", e)
	}
}

// With a grant, what stops a stream before a frame moves: a node that is no
// store, a camera that does not record here, a journal that cannot record
// the access; and a body that is not {camera}.
func TestLiveRefusesBeforeAFrame(t *testing.T) {
	grant := map[string]*policy.Grant{"g-desk": {ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk"}}
	body := []byte(`{"camera":"` + cam + `"}`)

	s, j, h := testServer(grant)
	h.hub.Close()
	if err := s.Handle(context.Background(), keys.NodePublic{}, []byte(`{"camera":"`+cam+`","x":1}`), nil); rpcCode(t, err) != rpc.BadRequest {
		t.Errorf("unknown field: %v, want a bad request", err)
	}
	for _, q := range []string{
		`{"camera":"` + cam + `","udp":4000}`,                             // a port and no token
		`{"camera":"` + cam + `","token":"0011223344556677"}`,             // a token and no port
		`{"camera":"` + cam + `","udp":4000,"token":"00112233"}`,          // too short
		`{"camera":"` + cam + `","udp":4000,"token":"zz11223344556677"}`,  // not hex
		`{"camera":"` + cam + `","udp":70000,"token":"0011223344556677"}`, // no port
	} {
		if err := s.Handle(context.Background(), keys.NodePublic{}, []byte(q), nil); rpcCode(t, err) != rpc.BadRequest {
			t.Errorf("%s: %v, want a bad request", q, err)
		}
	}
	s.Hubs = nil
	if err := s.Handle(context.Background(), keys.NodePublic{}, body, nil); rpcCode(t, err) != rpc.Denied || !strings.Contains(err.Error(), "not a store") {
		t.Errorf("no store: %v", err)
	}
	s.Hubs = &twinHubs{}
	if err := s.Handle(context.Background(), keys.NodePublic{}, body, nil); rpcCode(t, err) != rpc.Unavailable || !strings.Contains(err.Error(), "not recording") {
		t.Errorf("no ring: %v", err)
	}
	full := errors.New("journal full")
	s.Hubs, j.ready = h, full
	if err := s.Handle(context.Background(), keys.NodePublic{}, body, nil); !errors.Is(err, full) {
		t.Errorf("journal failing: %v, want its error", err)
	}
	if len(j.events) != 0 {
		t.Errorf("audit %+v: nothing was watched, nothing denied by the policy", j.events)
	}
}

// A grant committed through another node a moment ago is not refused for
// this replica's lag: the store reads the policy linearizably before it
// refuses, and checks the running stream against that state until its
// replica catches up. A read that fails leaves the refusal standing.
func TestLiveSyncsBeforeRefusing(t *testing.T) {
	grant := map[string]*policy.Grant{"g-desk": {ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk"}}
	withGrant, _, _ := testServer(grant)
	ahead := withGrant.Policy.State()
	ahead.Applied = 7
	body := []byte(`{"camera":"` + cam + `"}`)

	s, j, h := testServer(nil) // the replica: no grant yet
	defer h.hub.Close()
	s.Hubs = &twinHubs{} // allowed, the store then finds no ring: Unavailable
	syncs := 0
	s.Sync = func(context.Context) (*policy.State, error) { syncs++; return ahead, nil }
	if err := s.Handle(context.Background(), keys.NodePublic{}, body, nil); rpcCode(t, err) != rpc.Unavailable {
		t.Fatalf("after the read: %v, want the grant to count", err)
	}
	if syncs != 1 || len(j.events) != 0 {
		t.Fatalf("%d reads, audit %+v; want one read and no denial", syncs, j.events)
	}
	if got := s.current(ahead); got != ahead {
		t.Error("a stream allowed on a state ahead of the replica is checked against the replica")
	}
	caughtUp := *ahead
	s.Policy = twinPolicy{&caughtUp}
	if got := s.current(ahead); got != &caughtUp {
		t.Error("a replica that caught up is not what the stream is checked against")
	}

	s, j, h = testServer(nil)
	defer h.hub.Close()
	s.Sync = func(context.Context) (*policy.State, error) { return nil, errors.New("no quorum") }
	if err := s.Handle(context.Background(), keys.NodePublic{}, body, nil); rpcCode(t, err) != rpc.Denied || len(j.events) != 1 {
		t.Fatalf("a failed read: %v, audit %+v; want the refusal, audited", err, j.events)
	}
}
