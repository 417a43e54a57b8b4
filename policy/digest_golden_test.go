package policy

import (
	"testing"
	"time"
)

// The digest of a view request is pinned: approvals already signed, and the
// evidence kept with approved requests, name digests computed this way, so
// adding fields for other actions must not change it. The value was
// computed independently of this package (a Python re-implementation of the
// encoding) and by RequestDigest before erase and hold existed.
func TestRequestDigestViewIsPinned(t *testing.T) {
	r := &Request{ID: "r1", Requester: "alice", Node: "admin-1", Selector: "praha-1/*",
		Cameras: []string{"praha-1/entrance", "praha-1/tills"},
		From:    time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC),
		Purpose: "theft at till 2 on the 26th", Basis: "art. 6(1)(f) GDPR, legitimate interest",
		Key:     "30313233343536373839616263646566" + "30313233343536373839616263646566",
		Expires: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC), Created: time.Date(2026, 11, 27, 9, 0, 0, 500000000, time.UTC)}
	const want = "c1c23d68e34cab3549e284d9e949f69a821fe732c5d724931a99642b990facc1"
	if got := RequestDigest("fed-1", r); got != want {
		t.Fatalf("view request digest %s, want %s: approvals signed before this change no longer verify", got, want)
	}
}
