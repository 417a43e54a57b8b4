package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// approvedRequest files r1 by alice and has bob and carol approve it.
func approvedRequest(t *testing.T, f *reqFed) *Request {
	t.Helper()
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	for _, by := range []string{"bob", "carol"} {
		mustApply(t, f.s, f.approve(t, by, "r1", RequestDigest(f.s.FederationID, f.s.Requests["r1"]), tc))
	}
	return f.s.Requests["r1"]
}

// The ledger replays into the users and keys of the federation, and a
// release is proven from signatures alone.
func TestVerifyRelease(t *testing.T) {
	f := newReqFed(t)
	r := approvedRequest(t, f)
	v, err := VerifyRelease(f.s.FederationID, f.s.Ledger, r, tc)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "frank", "bob", "carol"} {
		if v.Users[u] == nil || v.Users[u].Fingerprint != f.s.Users[u].Fingerprint {
			t.Errorf("the replayed ledger lacks %s", u)
		}
	}
	if v.Users["dave"] != nil || len(v.Cameras) != 0 {
		t.Error("the ledger holds more than governance")
	}
	if v.Nodes["witness"] == nil || !v.Sealed() {
		t.Error("the replayed ledger lacks the witness or the seal")
	}
}

// A node that serves the ledger cannot forge what it proves.
func TestVerifyReleaseRefusesForgery(t *testing.T) {
	f := newReqFed(t)
	r := approvedRequest(t, f)
	fid := f.s.FederationID
	check := func(name string, fid string, ledger []Envelope, r *Request, now time.Time, want string) {
		t.Helper()
		_, err := VerifyRelease(fid, ledger, r, now)
		if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal mentioning %q", name, err, want)
		}
	}
	check("another federation", "0123", f.s.Ledger, r, tc, "not \"0123\"")
	check("expired", fid, f.s.Ledger, r, r.Expires, "expired")

	// An approver the node invented: added to a forged ledger entry.
	mallory := newTestUser(t, "mallory")
	forged := cloneRequest(*r)
	forged.Evidence = forged.Evidence[:1]
	c := cmd(KindApproveRequest, tc)
	c.Approval = &Approval{Request: "r1", Digest: RequestDigest(fid, r)}
	forged.Evidence = append(forged.Evidence, mallory.sign(t, c))
	check("an invented approver", fid, f.s.Ledger, &forged, tc, `"mallory" is not in the ledger`)

	// A tampered ledger entry (bob's key swapped for mallory's) no longer
	// carries alice's signature.
	ledger := append([]Envelope(nil), f.s.Ledger...)
	for i, e := range ledger {
		if bytes.Contains(e.Body, []byte(`"name":"bob"`)) {
			ledger[i].Body = bytes.Replace(e.Body, []byte(f.s.Users["bob"].Fingerprint), []byte(mallory.fp), 1)
		}
	}
	check("a tampered ledger", fid, ledger, r, tc, "does not replay")

	// A widened scope: the approvals signed another digest.
	wide := cloneRequest(*r)
	wide.From = wide.From.Add(-time.Hour)
	check("a widened range", fid, f.s.Ledger, &wide, tc, "not an approval of this request's digest")

	// One approval is not enough; a duplicate does not count twice.
	one := cloneRequest(*r)
	one.Evidence = []Envelope{r.Evidence[0], r.Evidence[0]}
	check("one approver twice", fid, f.s.Ledger, &one, tc, "has 1 valid approvals")

	// An approver revoked since (by the quorum, in the ledger) no longer
	// counts.
	f.revoke(t, KindRevokeUser, "carol", tc)
	check("a revoked approver", fid, f.s.Ledger, f.s.Requests["r1"], tc, "has 1 valid approvals")
}

// FuzzVerifyRelease: a ledger and a request as a node may serve them, any
// bytes: never a panic, and nothing proven without a sealed genesis of the
// federation asked for.
func FuzzVerifyRelease(f *testing.F) {
	f.Add([]byte(`[{"body":"e30=","sig":""}]`), []byte(`{"id":"r1","expires":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`), []byte(`{}`))
	f.Add([]byte(`[{"body":"eyJpZCI6Imdlbi`+`Jlc2lzIn0=","sig":null}]`), []byte(`{"evidence":[{"body":"","sig":""}]}`))
	f.Fuzz(func(t *testing.T, ledgerJSON, requestJSON []byte) {
		var ledger []Envelope
		var r Request
		if json.Unmarshal(ledgerJSON, &ledger) != nil || json.Unmarshal(requestJSON, &r) != nil || len(ledger) > 64 {
			return
		}
		if _, err := VerifyRelease("fed", ledger, &r, t0); err == nil {
			t.Fatal("fuzzed bytes proved a release")
		}
	})
}
