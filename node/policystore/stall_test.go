package policystore

import (
	"bytes"
	"encoding/json"
	"errors"
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
	now := time.Now().UTC().Truncate(time.Second)
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
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
	sign := func(body []byte) policy.Envelope {
		sig, err := admin.Sign(policy.SignedBytes(ps.State().FederationID, body), now)
		if err != nil {
			t.Fatal(err)
		}
		return policy.Envelope{Body: body, Sig: sig}
	}
	site := func(id, name string) policy.Envelope {
		b, _ := policy.EncodeCommand(&policy.Command{ID: id, Time: now, Signer: "alice", Kind: policy.KindAddSite, Site: &policy.Site{Name: name, Jurisdiction: "EU"}})
		return sign(b)
	}
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
