package auditquery

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// fixture is a federation of three people: carol the auditor, vic a
// viewer and rob a revoked auditor; and a store with a node key.
type fixture struct {
	st              *policy.State
	carol, vic, rob *keys.AdminKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := time.Now().Add(-time.Hour)
	f := &fixture{st: &policy.State{Federation: "shops", FederationID: "fid-1", Users: map[string]*policy.User{},
		Nodes: map[string]*policy.Node{"store-brno": {Name: "store-brno", PublicKey: "nodekey:" + strings.Repeat("ab", 32), Role: policy.RoleStore, Site: "brno"}}}}
	for _, u := range []struct {
		name string
		role policy.UserRole
		k    **keys.AdminKey
	}{{"carol", policy.UserAuditor, &f.carol}, {"vic", policy.UserViewer, &f.vic}, {"rob", policy.UserAuditor, &f.rob}} {
		k, err := keys.NewAdminKey(u.name, now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		*u.k = k
		f.st.Users[u.name] = &policy.User{Name: u.name, Role: u.role, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}
	}
	f.st.Users["rob"].Revoked = true
	return f
}

func (f *fixture) sign(t *testing.T, user string, k *keys.AdminKey, q Query) []byte {
	t.Helper()
	q.Federation, q.User = f.st.FederationID, user
	b, err := Sign(&q, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Only a current user whose role reads audit journals, signing for this
// federation, now, and for exactly these filters, gets an answer.
func TestVerifyRefusesAllButTheAuditor(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	q, why, err := Verify(f.st, f.sign(t, "carol", f.carol, Query{Site: "brno", Action: "live-view"}), now)
	if err != nil || q.Site != "brno" || q.Action != "live-view" || !strings.Contains(why, "auditor") {
		t.Fatalf("the auditor's query: %+v %q %v", q, why, err)
	}

	widened := func() []byte {
		var s Signed
		json.Unmarshal(f.sign(t, "carol", f.carol, Query{Site: "brno"}), &s)
		s.Query = []byte(strings.Replace(string(s.Query), `"site":"brno"`, `"site":"praha"`, 1))
		b, _ := json.Marshal(s)
		return b
	}
	otherFed := func() []byte {
		q := Query{Federation: "fid-2", User: "carol"}
		b, err := Sign(&q, f.carol)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name, want string
		body       []byte
		at         time.Time
	}{
		{"a viewer", "role viewer", f.sign(t, "vic", f.vic, Query{}), now},
		{"a revoked auditor", "revoked", f.sign(t, "rob", f.rob, Query{}), now},
		{"someone else's key", "signature", f.sign(t, "carol", f.vic, Query{}), now},
		{"a filter changed after signing", "signature", widened(), now},
		{"another federation", "another federation", otherFed(), now},
		{"a query kept for later", "sign it again", f.sign(t, "carol", f.carol, Query{}), now.Add(10 * time.Minute)},
		{"an unknown user", "not in the policy", f.sign(t, "mallory", f.carol, Query{}), now},
		{"junk", "audit query", []byte(`{"query":"e30=","sig":"","extra":1}`), now},
	} {
		if _, _, err := Verify(f.st, c.body, c.at); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a refusal naming %q", c.name, err, c.want)
		}
	}
	if err := (&Query{Nonce: "n", Since: now, Until: now.Add(-time.Hour)}).Check(); err == nil {
		t.Error("a window ending before it starts was accepted")
	}
	if err := (&Query{Nonce: "n", Limit: MaxLimit + 1}).Check(); err == nil {
		t.Error("a limit over MaxLimit was accepted")
	}
}

// An actor is found under every name the journals give it: its name, its
// node key, or user:/node: prefixed; the other filters are exact.
func TestMatcher(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	key := f.st.Nodes["store-brno"].PublicKey
	m := NewMatcher(f.st, &Query{Actor: "store-brno", Action: "live-view", Object: "brno/", Since: at.Add(-time.Hour), Until: at.Add(time.Hour)})
	e := func(actor, action, object string, t time.Time) *audit.Entry {
		return &audit.Entry{Event: audit.Event{Time: t, Actor: actor, Action: action, Object: object}}
	}
	for _, c := range []struct {
		e    *audit.Entry
		want bool
	}{
		{e("store-brno", "live-view", "brno/till-1", at), true},
		{e(key, "live-view", "brno/till-1", at), true},
		{e("node:store-brno", "live-view", "brno/till-1", at), true},
		{e("store-praha", "live-view", "brno/till-1", at), false},
		{e("store-brno", "live-view-x", "brno/till-1", at), false},
		{e("store-brno", "live-view", "praha/till-1", at), false},
		{e("store-brno", "live-view", "brno/till-1", at.Add(-2*time.Hour)), false},
		{e("store-brno", "live-view", "brno/till-1", at.Add(time.Hour)), false}, // until is exclusive
	} {
		if got := m.Match(c.e); got != c.want {
			t.Errorf("%s %s %s %s: match %v, want %v", c.e.Actor, c.e.Action, c.e.Object, c.e.Time, got, c.want)
		}
	}
	byKey := NewMatcher(f.st, &Query{Actor: key})
	if !byKey.Match(e("store-brno", "x", "", at)) {
		t.Error("asking by node key does not find the entries under the node's name")
	}
	if NewMatcher(f.st, &Query{Site: "brno"}).Journal("praha") {
		t.Error("a site filter reads another site's journal")
	}
}

// A journal copy is scanned whole; the limit keeps the newest; the same
// entry from two datacenters is shown once; an altered row is refused.
func TestCollectMergeAndDecode(t *testing.T) {
	dir := t.TempDir()
	j, err := audit.Open(dir, audit.Options{Node: "store-brno"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for i := range 10 {
		if _, err := j.Append(audit.Event{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "admin-1", Action: "live-view", Object: fmt.Sprintf("brno/cam-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := j.After(0, 0)
	var file []byte
	for _, e := range es {
		l, _ := e.Line()
		file = append(file, l...)
	}
	file = append(file, `{"seq":11,"tim`...) // an append in progress
	path := filepath.Join(t.TempDir(), "store-brno.jsonl")
	os.WriteFile(path, file, 0o600)

	q := &Query{Limit: 4}
	c := NewCollector(NewMatcher(nil, q))
	if err := c.ScanFile(path, "brno"); err != nil {
		t.Fatal(err)
	}
	rows := c.Rows()
	if len(rows) != 4 || rows[0].Seq != 7 || rows[3].Seq != 10 || c.More != 6 || rows[0].Site != "brno" {
		t.Fatalf("limit 4 kept %d rows from seq %d, %d more; want the newest 4 (7..10), 6 more", len(rows), rows[0].Seq, c.More)
	}
	merged, more := Merge(5, rows, rows[1:])
	if len(merged) != 4 || more != 0 {
		t.Fatalf("merging an answer with part of itself gave %d rows, %d more; want 4, 0", len(merged), more)
	}

	frames, err := Frames(merged)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeFrames(frames)
	if err != nil || len(back) != 4 || back[2].Object != merged[2].Object || back[2].Hash != merged[2].Hash {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	bad := strings.Replace(string(frames[0]), "brno/cam-8", "brno/cam-X", 1)
	if _, err := DecodeFrames([][]byte{[]byte(bad)}); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("an altered row was accepted: %v", err)
	}

	broken := filepath.Join(t.TempDir(), "x.jsonl")
	os.WriteFile(broken, []byte("not json\n"), 0o600)
	if err := NewCollector(NewMatcher(nil, &Query{})).ScanFile(broken, ""); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a damaged copy: %v, want an error naming line 1", err)
	}
}

// The line pre-filter never drops an entry the matcher takes, whatever
// characters the fields and filters hold (JSON escapes, <, &, quotes,
// non-ASCII).
func TestMayMatchKeepsEveryMatch(t *testing.T) {
	alphabet := rapid.SampledFrom([]rune{'a', 'b', '/', '<', '>', '&', '"', '\\', 'č', '€', ' ', '\n', '\u2028'})
	text := rapid.StringOfN(alphabet, 0, 6, -1)
	rapid.Check(t, func(rt *rapid.T) {
		e := audit.Entry{Seq: 1, Event: audit.Event{Time: time.Unix(1_700_000_000, 0).UTC(), Node: "n",
			Actor: text.Draw(rt, "actor"), Action: text.Draw(rt, "action"), Object: text.Draw(rt, "object"), Reason: text.Draw(rt, "reason")}}
		q := &Query{Actor: text.Draw(rt, "qactor"), Action: text.Draw(rt, "qaction"), Object: text.Draw(rt, "qobject")}
		if rapid.Bool().Draw(rt, "actor equal") {
			q.Actor = e.Actor
		}
		if rapid.Bool().Draw(rt, "action equal") {
			q.Action = e.Action
		}
		if rapid.Bool().Draw(rt, "object part") && len(e.Object) > 0 {
			r := []rune(e.Object)
			i := rapid.IntRange(0, len(r)-1).Draw(rt, "from")
			q.Object = string(r[i:])
		}
		m := NewMatcher(nil, q)
		line, err := e.Line()
		if err != nil {
			rt.Fatal(err)
		}
		if m.Match(&e) && !m.MayMatch(line) {
			rt.Fatalf("pre-filter dropped a match: %s for %+v", line, q)
		}
	})
}
