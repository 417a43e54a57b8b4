package recording

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

const selfKey = "nodekey:self"

var custodianKeys = sync.OnceValues(func() ([3]*keys.CustodianKey, error) {
	var out [3]*keys.CustodianKey
	for i, name := range []string{"dc-a", "dc-b", "recovery"} {
		k, err := keys.NewCustodianKey(name)
		if err != nil {
			return out, err
		}
		out[i] = k
	}
	return out, nil
})

// testState is a federation with store "store" of site praha-1, two EU
// datacenters with custodian keys, the recovery key, and cameras: one of
// praha-1 with a source, one of praha-1 without, one of another site.
func testState(t *testing.T) *policy.State {
	t.Helper()
	ks, err := custodianKeys()
	if err != nil {
		t.Fatal(err)
	}
	return &policy.State{
		Federation: "acme",
		Nodes: map[string]*policy.Node{
			"store": {Name: "store", PublicKey: selfKey, Role: policy.RoleStore, Site: "praha-1", Jurisdiction: "EU"},
			"dc-a":  {Name: "dc-a", PublicKey: "nodekey:a", Role: policy.RoleDatacenter, Jurisdiction: "EU", Custodian: ks[0].Custodian().PublicKey()},
			"dc-b":  {Name: "dc-b", PublicKey: "nodekey:b", Role: policy.RoleDatacenter, Jurisdiction: "EU", Custodian: ks[1].Custodian().PublicKey()},
		},
		Recovery: ks[2].Custodian().PublicKey(),
		Cameras: map[string]*policy.Camera{
			"praha-1/entrance": {Site: "praha-1", Name: "entrance", Source: "synthetic:"},
			"praha-1/planned":  {Site: "praha-1", Name: "planned"},
			"brno-1/door":      {Site: "brno-1", Name: "door", Source: "synthetic:"},
		},
	}
}

// clone copies st deeply enough for a test to change nodes and cameras.
func clone(st *policy.State) *policy.State {
	c := *st
	c.Nodes = map[string]*policy.Node{}
	for k, v := range st.Nodes {
		n := *v
		c.Nodes[k] = &n
	}
	c.Cameras = map[string]*policy.Camera{}
	for k, v := range st.Cameras {
		cam := *v
		c.Cameras[k] = &cam
	}
	return &c
}

func testDeps(t *testing.T, p Policy, j *nodetest.Journal) Deps {
	t.Helper()
	k := keys.NewNodePrivate()
	signer, err := keys.NewCustodySigner("node", &k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(signer.Zero)
	return Deps{
		Name: "store", Dir: t.TempDir(), Policy: p, Audit: j, Logf: t.Logf,
		SelfName: func(st *policy.State) string {
			for name, n := range st.Nodes {
				if n.PublicKey == selfKey {
					return name
				}
			}
			return ""
		},
		Custody:       signer,
		ReconcileWait: 50 * time.Millisecond,
	}
}

// desired follows the policy: the store records its own site's cameras that
// have a source; a changed source, changed credentials or changed custodians
// give a new key (a restart); too few custodians or the store's revocation
// stop it, saying why.
func TestDesiredFollowsPolicy(t *testing.T) {
	st := testState(t)
	r := &Recorder{d: testDeps(t, nodetest.NewPolicy(st), &nodetest.Journal{})}
	want, why := r.desired(st)
	if why != "" || len(want) != 1 || want["praha-1/entrance"].source != "synthetic:" {
		t.Fatalf("desired = %v, %q; want praha-1/entrance only", want, why)
	}
	w0 := want["praha-1/entrance"]
	if len(w0.custodians) != 3 || w0.signer == nil || w0.signer.Name() != "store" {
		t.Fatalf("custodians %v, signer %v: want dc-a, dc-b and recovery, sealed as store", w0.custodians, w0.signer)
	}

	moved := clone(st)
	moved.Cameras["praha-1/entrance"].Source = "synthetic:?fps=10"
	if w, _ := r.desired(moved); w["praha-1/entrance"].key == w0.key {
		t.Error("a new source keeps the recorder's key: it would not restart")
	}

	if err := saveCameraSecret(r.d.Dir, "praha-1/entrance", CameraSecret{User: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	w1, _ := r.desired(st)
	if w1["praha-1/entrance"].key == w0.key || w1["praha-1/entrance"].sec.User != "u" {
		t.Errorf("new credentials: key changed %v, user %q", w1["praha-1/entrance"].key != w0.key, w1["praha-1/entrance"].sec.User)
	}
	// A pin learned on first use must not restart the recording; an
	// operator's camera add (a new SetAt) must, and clears the pin.
	if err := learnCameraPin(r.d.Dir, "praha-1/entrance", time.Time{}, "sha256:"+strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}
	if w, _ := r.desired(st); w["praha-1/entrance"].key != w1["praha-1/entrance"].key || w["praha-1/entrance"].sec.Pin == "" {
		t.Errorf("learned pin: key changed %v, pin %q; want the same key, the pin kept", w["praha-1/entrance"].key != w1["praha-1/entrance"].key, w["praha-1/entrance"].sec.Pin)
	}
	if err := learnCameraPin(r.d.Dir, "praha-1/entrance", time.Time{}, "sha256:"+strings.Repeat("cd", 32)); err == nil {
		t.Error("a second learned pin replaced the first")
	}
	if err := saveCameraSecret(r.d.Dir, "praha-1/entrance", CameraSecret{User: "u", Password: "p", Transport: "udp", SetAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if w, _ := r.desired(st); w["praha-1/entrance"].key == w1["praha-1/entrance"].key || w["praha-1/entrance"].sec.Pin != "" {
		t.Errorf("camera add again: key changed %v, pin %q; want a restart and no pin", w["praha-1/entrance"].key != w1["praha-1/entrance"].key, w["praha-1/entrance"].sec.Pin)
	}
	if err := saveCameraSecret(r.d.Dir, "praha-1/entrance", CameraSecret{User: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}

	fewer := clone(st)
	fewer.Nodes["dc-b"].Revoked = true
	if w, why := r.desired(fewer); why != "" || w["praha-1/entrance"].key == w1["praha-1/entrance"].key || len(w["praha-1/entrance"].custodians) != 2 {
		t.Errorf("dc-b revoked: %q, %d custodians; want the key to change, two custodians", why, len(w["praha-1/entrance"].custodians))
	}
	fewer.Nodes["dc-a"].Jurisdiction = "US"
	if w, why := r.desired(fewer); w != nil || !strings.Contains(why, "waiting for custodian keys: 1 known") {
		t.Errorf("one custodian left: %v, %q; want nothing, waiting for custodian keys", w, why)
	}

	gone := clone(st)
	gone.Nodes["store"].Revoked = true
	if w, why := r.desired(gone); w != nil || why != "this node is not a live store in the policy" {
		t.Errorf("revoked store: %v, %q", w, why)
	}

	// Revoked, as its node learned otherwise than through its replica.
	r.d.Halted = func() string { return "this node was revoked" }
	if w, why := r.desired(st); w != nil || why != "this node was revoked" {
		t.Errorf("halted store: %v, %q", w, why)
	}
}

// A store's recorders stop at the end of its membership window, by its own
// clock, although no command signals it and nothing else wakes them.
func TestRecorderStopsAtItsWindowEnd(t *testing.T) {
	nodetest.CheckLeaks(t)
	st := testState(t)
	end := time.Now().Add(1500 * time.Millisecond)
	st.Nodes["store"].Window.Until = end
	d := testDeps(t, nodetest.NewPolicy(st), &nodetest.Journal{})
	d.ReconcileWait = time.Hour
	r, err := Start(Config{MinFree: -1, RetentionEvery: time.Hour}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Status().Cameras) != 1 {
		t.Fatalf("inside its window the store records %+v", r.Status())
	}
	nodetest.WaitTrue(t, 5*time.Second, "the recorder to stop at the window's end", func() bool { return len(r.Status().Cameras) == 0 })
	if late := time.Since(end); late < 0 || late > time.Second {
		t.Errorf("the recorder stopped %v after the window's end, want within 1s", late)
	}
}

// A running Recorder starts the camera the policy gives it and stops it
// when a policy change takes the camera away: its live ring goes, its
// status empties, and nothing is left running after Close.
func TestRecorderFollowsPolicyChange(t *testing.T) {
	nodetest.CheckLeaks(t)
	st := testState(t)
	p := nodetest.NewPolicy(st)
	j := &nodetest.Journal{}
	var refused []*policy.State
	var mu sync.Mutex
	d := testDeps(t, p, j)
	d.RefuseOutside = func(s *policy.State) {
		mu.Lock()
		refused = append(refused, s)
		mu.Unlock()
	}
	r, err := Start(Config{MinFree: -1}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.LiveHub("praha-1/entrance") == nil || r.LiveHub("brno-1/door") != nil {
		t.Fatal("after Start: want a live ring for praha-1/entrance only")
	}
	if s := r.Status(); s.Waiting != "" || len(s.Cameras) != 1 || s.Cameras[0].Camera != "praha-1/entrance" {
		t.Fatalf("status %+v", s)
	}
	if r.Store() == nil || r.Store().Dir() != MediaDir(d.Dir) {
		t.Fatalf("store at %v, want %s", r.Store(), MediaDir(d.Dir))
	}

	next := clone(st)
	delete(next.Cameras, "praha-1/entrance")
	p.Set(next)
	nodetest.WaitTrue(t, 10*time.Second, "the recorder to stop", func() bool {
		return r.LiveHub("praha-1/entrance") == nil && len(r.Status().Cameras) == 0
	})
	mu.Lock()
	last := refused[len(refused)-1]
	mu.Unlock()
	if last.Cameras["praha-1/entrance"] != nil {
		t.Error("replication was not told of the policy the recorders follow")
	}
	if len(j.Of("recording-start")) != 0 {
		t.Errorf("recording-start denials: %+v", j.Of("recording-start"))
	}
}

// Camera credentials are kept only on the store of the camera's site, in a
// file only its user reads, and their setting is audited without them.
func TestSetCameraSecret(t *testing.T) {
	st := testState(t)
	j := &nodetest.Journal{}
	d := testDeps(t, nodetest.NewPolicy(st), j)
	sec := CameraSecret{User: "admin", Password: "hunter2"}
	if err := SetCameraSecret(d, nil, "praha-1/entrance", sec); err == nil || !strings.Contains(err.Error(), "static peers file") {
		t.Errorf("no policy: %v", err)
	}
	if err := SetCameraSecret(d, st, "brno-1/door", sec); err == nil || !strings.Contains(err.Error(), `store of site "brno-1"`) {
		t.Errorf("another site's camera: %v", err)
	}
	if err := SetCameraSecret(d, st, "praha-1/entrance", sec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(d.Dir, camSecretsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v, %v", fi, err)
	}
	got, err := loadCameraSecrets(d.Dir)
	if g := got["praha-1/entrance"]; err != nil || g.User != sec.User || g.Password != sec.Password || g.SetAt.IsZero() {
		t.Fatalf("loaded %v, %v", got, err)
	}
	// camera add again without credentials but with settings keeps the
	// credentials, and refuses settings that make no sense.
	if err := SetCameraSecret(d, st, "praha-1/entrance", CameraSecret{Transport: "udp", Pin: "sha256:" + strings.Repeat("0f", 32)}); err != nil {
		t.Fatal(err)
	}
	got, _ = loadCameraSecrets(d.Dir)
	if g := got["praha-1/entrance"]; g.User != "admin" || g.Password != "hunter2" || g.Transport != "udp" || g.Pin == "" {
		t.Errorf("after settings only: %+v", g.Transport)
	}
	for _, bad := range []CameraSecret{{Transport: "sctp"}, {Pin: "md5:00"}, {CA: "not PEM"}} {
		if err := SetCameraSecret(d, st, "praha-1/entrance", bad); err == nil {
			t.Errorf("accepted %s / %q / %q", bad.Transport, bad.Pin, bad.CA)
		}
	}
	es := j.Of("camera-credentials")
	if len(es) != 2 || es[0].Object != "praha-1/entrance" || strings.Contains(es[0].Reason, "hunter2") {
		t.Errorf("audit %+v", es)
	}
	if s := sec.String() + sec.GoString(); strings.Contains(s, "hunter2") {
		t.Errorf("a secret prints its password: %s", s)
	}
}
