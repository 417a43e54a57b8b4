package join

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// twin is an in-memory node for the join service: a policy replica that
// never changes, a Submitter that counts what reaches it, and an audit
// journal in a slice.
type twin struct {
	st  *policy.State
	res policy.ApplyResult // what Submit answers

	mu      sync.Mutex
	syncs   int
	submits []policy.Envelope
	events  []audit.Event
}

func (w *twin) State() *policy.State     { return w.st }
func (w *twin) Changed() <-chan struct{} { return make(chan struct{}) }
func (w *twin) Sync(context.Context) (*policy.State, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncs++
	return w.st, nil
}

func (w *twin) Submit(_ context.Context, env policy.Envelope) (policy.ApplyResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.submits = append(w.submits, env)
	return w.res, nil
}

func (w *twin) Event(e audit.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, e)
}

func (w *twin) submitted() []policy.Envelope {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]policy.Envelope(nil), w.submits...)
}

func (w *twin) synced() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.syncs
}

func (w *twin) audited() []audit.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]audit.Event(nil), w.events...)
}

func startTwin(t *testing.T, w *twin) *Server {
	t.Helper()
	js, err := StartServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Submit: w, Policy: w, Audit: w})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(js.Close)
	return js
}

// federation founds federation name on a replica (genesis by admin alice,
// site praha-1) and records an invite for store-1, returning the replica
// and a token holding the invite's secret.
func federation(t *testing.T, name string) (*policy.State, *Token) {
	t.Helper()
	now := time.Now()
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	dc := keys.NewNodePrivate()
	defer dc.Zero()
	cust, err := keys.NewCustodianKey("dc-a")
	if err != nil {
		t.Fatal(err)
	}
	defer cust.Zero()
	st := &policy.State{}
	apply := func(c *policy.Command, signed bool) {
		t.Helper()
		c.ID, c.Time = policy.NewCommandID(), now.UTC()
		env := policy.Envelope{}
		if signed {
			c.Signer = "alice"
		}
		if env.Body, err = policy.EncodeCommand(c); err != nil {
			t.Fatal(err)
		}
		if signed {
			if env.Sig, err = admin.Sign(policy.SignedBytes(st.FederationID, env.Body), c.Time); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Apply(env); err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
	}
	apply(&policy.Command{Kind: policy.KindGenesis, Genesis: &policy.Genesis{Federation: name,
		Admin: policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
		Node: policy.Node{Name: "dc-a", PublicKey: dc.Public().String(), Role: policy.RoleDatacenter, Jurisdiction: "EU",
			Endpoint: "192.0.2.1:51820", Custodian: cust.Custodian().PublicKey()}}}, false)
	apply(&policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}}, true)
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(len(name) + i)
	}
	pub, _, err := policy.InviteKeyFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	apply(&policy.Command{Kind: policy.KindCreateInvite, Invite: &policy.Invite{ID: "inv-1", Role: policy.RoleStore, Name: "store-1",
		Site: "praha-1", Expires: now.Add(time.Hour), Key: hex.EncodeToString(pub)}}, true)
	return st, &Token{Invite: "inv-1", Secret: secret}
}

// redeem is a joiner's redeem of tok for a fresh node key.
func redeem(t *testing.T, tok *Token) (policy.Envelope, keys.NodePublic) {
	t.Helper()
	priv := keys.NewNodePrivate()
	defer priv.Zero()
	env, err := tok.Redeem(priv.Public(), "192.0.2.9:51820", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return env, priv.Public()
}

// ask sends req to the join service from source from and returns the
// answer.
func ask(t *testing.T, from string, js *Server, req []byte) policy.ApplyResult {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", js.Addr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	var res policy.ApplyResult
	if err := json.NewDecoder(c).Decode(&res); err != nil {
		t.Fatalf("answer to %s: %v", from, err)
	}
	return res
}

// A redeem the replica takes is submitted, and the join is audited as
// allowed, naming the joining key.
func TestServerSubmitsARedeemThePolicyTakes(t *testing.T) {
	nodetest.CheckLeaks(t)
	st, tok := federation(t, "acme")
	w := &twin{st: st, res: policy.ApplyResult{ID: "c-1", Kind: policy.KindRedeemInvite, Applied: true}}
	js := startTwin(t, w)
	env, pub := redeem(t, tok)
	res, err := sendJoin(context.Background(), js.Addr().String(), env)
	if err != nil || res != w.res {
		t.Fatalf("answer %+v %v, want %+v", res, err, w.res)
	}
	if sub := w.submitted(); len(sub) != 1 || string(sub[0].Body) != string(env.Body) {
		t.Fatalf("%d redeems submitted, want the one sent", len(sub))
	}
	ev := w.audited()
	if len(ev) != 1 || ev[0].Decision != audit.Allow || ev[0].Actor != pub.String() || ev[0].Object != "invite inv-1" {
		t.Fatalf("audited %+v, want one allowed join by %s", ev, pub)
	}
}

// A redeem for another federation's invite is refused by the dry run, on
// the replica and again once made current, and never reaches the policy;
// its refusals are audited once per source and reason.
func TestServerRefusesAnotherFederationsToken(t *testing.T) {
	nodetest.CheckLeaks(t)
	st, _ := federation(t, "acme")
	_, other := federation(t, "globex")
	other.Invite = "inv-globex"
	w := &twin{st: st, res: policy.ApplyResult{Applied: true}}
	js := startTwin(t, w)
	for _, from := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"} {
		env, _ := redeem(t, other)
		if res := ask(t, from, js, env.Marshal()); res.Applied || res.Reason == "" {
			t.Fatalf("another federation's redeem from %s: %+v", from, res)
		}
	}
	if res := ask(t, "127.0.0.2", js, []byte("GET / HTTP/1.0\r\n\r\n")); res.Applied || res.Reason == "" {
		t.Fatalf("junk: %+v", res)
	}
	if sub := w.submitted(); len(sub) != 0 {
		t.Fatalf("%d refused redeems reached the policy", len(sub))
	}
	if n := w.synced(); n != 3 {
		t.Errorf("the replica was made current %d times, want once per redeem (3)", n)
	}
	ev := w.audited()
	want := map[string]bool{"127.0.0.2/32 redeem refused": true, "127.0.0.3/32 redeem refused": true, "127.0.0.2/32 not an invite redeem": true}
	for _, e := range ev {
		why, _, _ := strings.Cut(e.Reason, ":")
		if e.Decision != audit.Deny || !want[e.Actor+" "+why] {
			t.Errorf("audited %+v", e)
		}
		delete(want, e.Actor+" "+why)
		if why == "redeem refused" && (e.Object != "invite inv-globex" || !strings.Contains(e.Reason, "inv-globex")) {
			t.Errorf("refusal of %q: %q, want the invite named", e.Object, e.Reason)
		}
	}
	if len(ev) != 3 || len(want) != 0 {
		t.Fatalf("audited %d refusals, missing %v", len(ev), want)
	}
}

// One source holds at most MaxPerSource connections; one more is closed
// unanswered and audited, while another source still gets in.
func TestServerPerSourceLimit(t *testing.T) {
	nodetest.CheckLeaks(t)
	st, tok := federation(t, "acme")
	w := &twin{st: st, res: policy.ApplyResult{Applied: true}}
	js := startTwin(t, w)
	js.SetReadTimeout(time.Minute)
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", js.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range MaxPerSource {
		dial("127.0.0.2")
	}
	nodetest.WaitTrue(t, 5*time.Second, "the idle connections to take their slots", func() bool { return js.Conns() == MaxPerSource })
	extra := dial("127.0.0.2")
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("connection over the per-source limit: read %d, %v; want it closed", n, err)
	}
	// The service closes the connection, then audits.
	nodetest.WaitTrue(t, 5*time.Second, "the refusal audited", func() bool { return len(w.audited()) > 0 })
	ev := w.audited()
	if len(ev) != 1 || ev[0].Actor != "127.0.0.2/32" || ev[0].Decision != audit.Deny ||
		ev[0].Reason != "more than 2 connections at once from this source" {
		t.Fatalf("audited %+v, want the refused connection", ev)
	}
	env, _ := redeem(t, tok)
	if res := ask(t, "127.0.0.3", js, env.Marshal()); !res.Applied {
		t.Fatalf("another source's redeem: %+v", res)
	}
}
