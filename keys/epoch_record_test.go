package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestEpochRecordRoundTrip(t *testing.T) {
	f := newFixture(t)
	b, err := f.rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalEpochRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Camera != f.rec.Camera || !got.Start.Equal(f.rec.Start) || !got.End.Equal(f.rec.End) ||
		got.Fingerprint != f.rec.Fingerprint || !bytes.Equal(got.PublicKey, f.rec.PublicKey) || len(got.Shares) != 3 {
		t.Fatalf("round trip changed the record: %+v", got)
	}
	again, _ := got.Marshal()
	if !bytes.Equal(again, b) {
		t.Fatal("encoding is not canonical")
	}
	// The decoded record works: a custodian opens its share from it.
	if _, err := f.keys[2].OpenShare(got); err != nil {
		t.Fatal(err)
	}
}

func TestEpochRecordDecoderRejects(t *testing.T) {
	f := newFixture(t)
	good, _ := f.rec.Marshal()
	mutate := func(fn func(r *EpochRecord)) []byte {
		r := *f.rec
		r.Shares = append([]EncryptedShare(nil), f.rec.Shares...)
		fn(&r)
		return r.encode()
	}
	cases := map[string][]byte{
		"trailing byte": append(bytes.Clone(good), 0),
		"version 1":     append([]byte("CSEP\x01"), good[5:]...),
		"version 3":     append([]byte("CSEP\x03"), good[5:]...),
		// The public shares check answers: they must be of this key.
		"public share flipped":  mutate(func(r *EpochRecord) { r.Shares[2].Public[0] ^= 1 }),
		"public shares swapped": mutate(func(r *EpochRecord) { r.Shares[0].Public, r.Shares[1].Public = r.Shares[1].Public, r.Shares[0].Public }),
		"third share off the line": mutate(func(r *EpochRecord) {
			r.Shares[2].Public = r.Shares[1].Public
		}),
		"public shares of another key": mutate(func(r *EpochRecord) {
			g := newFixture(t)
			for i := range r.Shares {
				r.Shares[i].Public = g.rec.Shares[i].Public
			}
		}),
		"identity as public share": mutate(func(r *EpochRecord) { r.Shares[0].Public = [32]byte{1} }),
		"fingerprint differs":      mutate(func(r *EpochRecord) { r.Fingerprint[0] ^= 1 }),
		"one share":                mutate(func(r *EpochRecord) { r.Shares = r.Shares[:1] }),
		"duplicate custodian":      mutate(func(r *EpochRecord) { r.Shares[1].Custodian = r.Shares[0].Custodian }),
		"off boundary":             mutate(func(r *EpochRecord) { r.Start = r.Start.Add(time.Second) }),
		"end before start":         mutate(func(r *EpochRecord) { r.End = r.Start.Add(-time.Minute) }),
		"camera with NUL":          mutate(func(r *EpochRecord) { r.Camera = "cam\x00" }),
		"custodian fp zero":        mutate(func(r *EpochRecord) { r.Shares[0].Fingerprint = KeyFingerprint{} }),
		"empty share":              mutate(func(r *EpochRecord) { r.Shares[0].Encrypted = nil }),
		"custodian key as epoch key": mutate(func(r *EpochRecord) {
			r.PublicKey, r.Fingerprint = f.custs[0].pub, f.custs[0].fp // has a user ID
		}),
		"too big": make([]byte, MaxEpochRecordLen+1),
	}
	// The last share cut short by one byte.
	over := bytes.Clone(good)
	cases["share count lies"] = over[:len(over)-1]
	for name, b := range cases {
		if _, err := UnmarshalEpochRecord(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: %v, want ErrBadRecord", name, err)
		}
	}
	for n := range good {
		if _, err := UnmarshalEpochRecord(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	// Huge times do not overflow into a valid-looking epoch.
	huge := bytes.Clone(good)
	off := 5 + 1 + len(f.rec.Camera)
	binary.BigEndian.PutUint64(huge[off:], 1<<63-1)
	if _, err := UnmarshalEpochRecord(huge); err == nil {
		t.Fatal("start at the end of time: accepted")
	}
	if _, err := (&EpochRecord{}).Marshal(); err == nil {
		t.Fatal("Marshal of an empty record succeeded")
	}
}

func FuzzDecodeEpochRecord(f *testing.F) {
	fx := newFixture(f)
	good, _ := fx.rec.Marshal()
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("CSEP\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalEpochRecord(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a record that does not re-encode to itself: %v", err)
		}
	})
}
