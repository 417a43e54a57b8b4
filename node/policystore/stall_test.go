package policystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// A command of a protocol newer than this release stops the replica
// where it is: not applied, not refused, nothing after it applied, no
// snapshot taken, and a snapshot holding it does not restore. The status
// says where and why.
func TestNewerCommandStallsTheReplica(t *testing.T) {
	f := newStallFixture(t)
	ps, now, sign, site := f.ps, f.now, f.sign, f.site
	if res := applyResult(t, ps, site("s1", "praha-1")); !res.Applied {
		t.Fatalf("site refused: %s", res.Reason)
	}
	good, err := ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ps.State().Marshal()
	_, refusedBefore := ps.Counts()

	future := []byte(`{"id":"t1","time":"` + now.Format(time.RFC3339) + `","signer":"alice","kind":"camera.tilt","protocol":99,"tilt":{"deg":40}}`)
	res, err := ps.Apply(sign(future).Marshal(), 7)
	if err != nil {
		t.Fatal(err)
	}
	var ar policy.ApplyResult
	json.Unmarshal(res, &ar)
	st := ps.Stalled()
	if ar.Applied || st == nil || st.Index != 7 || st.Kind != "camera.tilt" || st.Need != 99 {
		t.Fatalf("after a protocol-99 command: result %+v, stall %+v", ar, st)
	}
	if !strings.Contains(st.Error(), "upgrade custos on this node") || !strings.Contains(ar.Reason, "stopped at entry 7") {
		t.Errorf("the stall does not say what to do: %q / %q", st.Error(), ar.Reason)
	}
	if _, refused := ps.Counts(); refused != refusedBefore {
		t.Error("the newer command was counted as refused")
	}
	// What follows is not applied, however valid.
	if r := applyResult(t, ps, site("s2", "brno-1")); r.Applied {
		t.Fatal("a command after the stop was applied")
	}
	if after, _ := ps.State().Marshal(); !bytes.Equal(before, after) {
		t.Fatal("the state moved after the stop")
	}
	if _, err := ps.Snapshot(); err == nil || !strings.Contains(err.Error(), "protocol 99") {
		t.Fatalf("a stalled replica snapshots: %v", err)
	}

	// A snapshot that holds a newer entry: refused, and the replica that
	// received it stops too; a good one still restores elsewhere.
	var snap snapshotV1
	json.Unmarshal(good, &snap)
	snap.Log = append(snap.Log, sign(future).Marshal())
	bad, _ := json.Marshal(snap)
	other := New(nil)
	if err := other.Restore(bad); !errors.Is(err, policy.ErrNewerProtocol) {
		t.Fatalf("restore of a snapshot with a newer entry: %v", err)
	}
	if other.Stalled() == nil || other.State().FederationID != "" {
		t.Fatalf("after the refused restore: stall %+v, federation %q", other.Stalled(), other.State().FederationID)
	}
	third := New(nil)
	if err := third.Restore(good); err != nil || third.Stalled() != nil {
		t.Fatalf("a good snapshot: %v, stall %+v", err, third.Stalled())
	}
}

// stallFixture is a store founded by admin alice, with her key.
type stallFixture struct {
	ps    *Store
	now   time.Time
	admin *keys.AdminKey
	// sign signs body with alice's key.
	sign func(body []byte) policy.Envelope
	site func(id, name string) policy.Envelope
}

func newStallFixture(t *testing.T) *stallFixture {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ps := New(nil)
	genesis := &policy.Command{ID: "genesis", Time: now, Kind: policy.KindGenesis, Genesis: &policy.Genesis{
		Federation: "acme",
		Admin:      policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
		Node:       policy.Node{Name: "dc-a", PublicKey: keys.NewNodePrivate().Public().String(), Role: policy.RoleDatacenter, Jurisdiction: "EU"},
	}}
	body, _ := policy.EncodeCommand(genesis)
	if res := applyResult(t, ps, policy.Envelope{Body: body}); !res.Applied {
		t.Fatalf("genesis refused: %s", res.Reason)
	}
	f := &stallFixture{ps: ps, now: now, admin: admin}
	f.sign = func(body []byte) policy.Envelope { return f.signWith(t, admin, body) }
	f.site = func(id, name string) policy.Envelope {
		b, _ := policy.EncodeCommand(&policy.Command{ID: id, Time: now, Signer: "alice", Kind: policy.KindAddSite, Site: &policy.Site{Name: name, Jurisdiction: "EU"}})
		return f.sign(b)
	}
	return f
}

func (f *stallFixture) signWith(t *testing.T, key *keys.AdminKey, body []byte) policy.Envelope {
	t.Helper()
	sig, err := key.Sign(policy.SignedBytes(f.ps.State().FederationID, body), f.now)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Envelope{Body: body, Sig: sig}
}

// future is a command of protocol 99, of a kind this release does not know.
func (f *stallFixture) future(id, signer string) []byte {
	return []byte(`{"id":"` + id + `","time":"` + f.now.Format(time.RFC3339) + `","signer":"` + signer + `","kind":"camera.tilt","protocol":99,"tilt":{"deg":40}}`)
}

// Only a command whose signature verifies with a key the policy holds, by
// a signer who may sign it, stops the replica. Anything else that claims
// a newer protocol is refused like any bad command, and the replica goes
// on applying and serving: else whoever can append to the log (a
// compromised leader) could stop every replica with one unsigned line.
func TestUnverifiedNewerCommandIsRefused(t *testing.T) {
	f := newStallFixture(t)
	ps := f.ps
	mallory, err := keys.NewAdminKey("alice", f.now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	// bob is a user, but a viewer: his key verifies, his role may not
	// sign a kind this release does not know.
	bobKey, err := keys.NewAdminKey("bob", f.now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer bobKey.Close()
	addBob, _ := policy.EncodeCommand(&policy.Command{ID: "add-bob", Time: f.now, Signer: "alice", Kind: policy.KindAddUser,
		User: &policy.User{Name: "bob", Role: policy.UserViewer, PublicKey: bobKey.PublicKey(), Fingerprint: bobKey.Fingerprint()}})
	if r := applyResult(t, ps, f.sign(addBob)); !r.Applied {
		t.Fatalf("user.add bob refused: %s", r.Reason)
	}
	redeem := []byte(`{"id":"r1","time":"` + f.now.Format(time.RFC3339) + `","kind":"invite.redeem","protocol":99,"redeem":{"invite":"i1","public_key":"x","proof":""}}`)

	cases := []struct {
		name string
		env  policy.Envelope
		want string // in the refusal
	}{
		{"unsigned", policy.Envelope{Body: f.future("u1", "alice")}, "no signature"},
		{"garbage signature", policy.Envelope{Body: f.future("u2", "alice"), Sig: []byte("not a signature")}, "signature"},
		{"signed by a key not in the policy", f.signWith(t, mallory, f.future("u3", "alice")), "signature"},
		{"signer not in the policy", f.signWith(t, mallory, f.future("u4", "mallory")), "not a user"},
		{"another federation's body, alice's key", policy.Envelope{Body: f.future("u5", "alice"), Sig: mustSign(t, f.admin, policy.SignedBytes("other", f.future("u5", "alice")), f.now)}, "signature"},
		{"signed by a user whose role may not", f.signWith(t, bobKey, f.future("u6", "bob")), "needs role admin"},
		{"an invite.redeem, which nothing signs", policy.Envelope{Body: redeem}, "no signature over its body"},
	}
	for i, tc := range cases {
		_, refusedBefore := ps.Counts()
		res, err := ps.Apply(tc.env.Marshal(), uint64(10+i))
		if err != nil {
			t.Fatalf("%s: Apply error: %v", tc.name, err)
		}
		var ar policy.ApplyResult
		json.Unmarshal(res, &ar)
		if st := ps.Stalled(); st != nil {
			t.Fatalf("%s: the replica stopped: %v", tc.name, st)
		}
		if ar.Applied || !strings.Contains(ar.Reason, "refused") || !strings.Contains(ar.Reason, tc.want) {
			t.Errorf("%s: result %+v; want a refusal mentioning %q", tc.name, ar, tc.want)
		}
		if _, refused := ps.Counts(); refused != refusedBefore+1 {
			t.Errorf("%s: refused count %d, want %d", tc.name, refused, refusedBefore+1)
		}
		// The replica goes on: a valid command applies, and it snapshots.
		if r := applyResult(t, ps, f.site(fmt.Sprintf("s%d", i), fmt.Sprintf("site-%d", i))); !r.Applied {
			t.Fatalf("%s: a valid command after it was refused: %s", tc.name, r.Reason)
		}
		if _, err := ps.Snapshot(); err != nil {
			t.Fatalf("%s: no snapshot after it: %v", tc.name, err)
		}
	}

	// A snapshot holding an unsigned newer entry is only a bad snapshot:
	// it does not restore, and the replica that received it does not stop.
	good, err := ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var snap snapshotV1
	json.Unmarshal(good, &snap)
	snap.Log = append(snap.Log, policy.Envelope{Body: f.future("u9", "alice")}.Marshal())
	bad, _ := json.Marshal(snap)
	other := New(nil)
	if err := other.Restore(bad); err == nil || errors.Is(err, policy.ErrNewerProtocol) || other.Stalled() != nil {
		t.Fatalf("restore of a snapshot with an unsigned newer entry: %v, stall %+v", err, other.Stalled())
	}

	// The same replica still stops at a newer command alice did sign.
	if r := applyResult(t, ps, f.sign(f.future("t1", "alice"))); r.Applied || ps.Stalled() == nil || ps.Stalled().Need != 99 {
		t.Fatalf("a signed protocol-99 command: result %+v, stall %+v", r, ps.Stalled())
	}
}

func mustSign(t *testing.T, key *keys.AdminKey, msg []byte, at time.Time) []byte {
	t.Helper()
	sig, err := key.Sign(msg, at)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
