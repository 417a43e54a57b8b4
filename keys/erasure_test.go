package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func erasureSigner(t *testing.T, name string) (*CustodySigner, NodePublic) {
	t.Helper()
	k := NewNodePrivate()
	s, err := NewCustodySigner(name, &k)
	if err != nil {
		t.Fatal(err)
	}
	return s, k.Public()
}

func TestErasureReceipt(t *testing.T) {
	s, pub := erasureSigner(t, "dc-a")
	_, other := erasureSigner(t, "dc-b")
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := &ErasureReceipt{Federation: "f1", Request: "e-1", Node: "dc-a", State: ErasureDone, Time: at,
		Cameras: []ErasedCamera{{Camera: "praha-1/door", From: at.Add(-time.Hour), To: at, Segments: 900, Bytes: 1 << 30, Epochs: 4,
			Digest: SegmentsDigest([][32]byte{{1}, {2}})}}}
	b, err := SealErasureReceipt(s, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenErasureReceipt(b, pub)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if got.Request != "e-1" || got.Node != "dc-a" || got.Cameras[0].Segments != 900 || !got.Time.Equal(at) {
		t.Fatalf("opened %+v", got)
	}

	// Another node's key, a changed byte anywhere, a cut or longer
	// receipt: refused.
	if _, err := OpenErasureReceipt(b, other); !errors.Is(err, ErrBadCustody) {
		t.Errorf("another node's key: %v", err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, err := OpenErasureReceipt(c, pub); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	if _, err := OpenErasureReceipt(b[:len(b)-1], pub); err == nil {
		t.Error("cut receipt accepted")
	}
	if _, err := OpenErasureReceipt(append(bytes.Clone(b), 0), pub); err == nil {
		t.Error("receipt with a trailing byte accepted")
	}

	// A node cannot sign a receipt in another's name, nor a malformed one.
	r2 := *r
	r2.Node = "dc-b"
	if _, err := SealErasureReceipt(s, &r2); err == nil || !strings.Contains(err.Error(), "signed as") {
		t.Errorf("receipt of dc-b signed by dc-a: %v", err)
	}
	r3 := *r
	r3.State, r3.Error = ErasureFailed, ""
	if _, err := SealErasureReceipt(s, &r3); err == nil {
		t.Error("failed receipt without a reason accepted")
	}
	r4 := *r
	r4.State = "maybe"
	if _, err := SealErasureReceipt(s, &r4); err == nil {
		t.Error("receipt with state maybe accepted")
	}
	// A segment seal's signature is not an erasure receipt's.
	if SegmentsDigest(nil) == SegmentsDigest([][32]byte{{}}) {
		t.Error("digest of no segments equals digest of one zero hash")
	}
}
